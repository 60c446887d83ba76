"""Models that the trainer fits: `SequenceModel` (memory, Reber and text tasks), `SequenceClassifier`, `Tagger`,
`Seq2Seq`, `Transcriber` (CTC); the `TrainableModel` protocol they share; and the registry that rebuilds any of
them from a checkpoint.
"""

from .classifier import ClassifierConfig, SequenceClassifier
from .configs import JSONConfig, option
from .protocol import TrainableModel
from .registry import KINDS, build_model, model_from_meta
from .seq2seq import Seq2Seq, Seq2SeqConfig
from .sequence import ENCODER_CELLS, LOSSES, RECURRENT_LAYERS, ModelConfig, SequenceModel
from .tagger import Tagger, TaggerConfig
from .transcriber import Transcriber, TranscriberConfig

__all__ = [
    "ENCODER_CELLS", "KINDS", "LOSSES", "RECURRENT_LAYERS", "ClassifierConfig", "JSONConfig", "ModelConfig",
    "Seq2Seq", "Seq2SeqConfig", "SequenceClassifier", "SequenceModel", "Tagger", "TaggerConfig", "TrainableModel",
    "Transcriber", "TranscriberConfig",
    "build_model", "model_from_meta", "option",
]
