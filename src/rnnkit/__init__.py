"""rnnkit: recurrent neural networks from first principles, in NumPy, with PyTorch's names and layouts."""

from . import init, losses, optim
from .activations import ReLU, Sigmoid, Softmax, Tanh
from .gradcheck import gradcheck
from .layers import Dropout, Embedding, Linear, OneHot, Sequential
from .losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from .models import ModelConfig, SequenceModel
from .module import Module, Parameter, manual_seed
from .optim import SGD, Adagrad, Adam, RMSprop, clip_grad_norm
from .recurrent import RNN
from .recurrent.elman import Elman

__version__ = "0.1.0"

__all__ = [
    "RNN", "Elman", "ModelConfig", "SequenceModel", "Adagrad", "Adam", "BCEWithLogitsLoss", "CrossEntropyLoss",
    "Dropout", "Embedding", "Linear", "MSELoss", "Module", "OneHot", "Parameter", "RMSprop", "ReLU", "SGD",
    "Sequential", "Sigmoid", "Softmax", "Tanh", "clip_grad_norm", "gradcheck", "init", "losses", "manual_seed",
    "optim",
]
