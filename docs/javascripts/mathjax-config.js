// MathJax 3 configuration of the documentation site (loaded before docs/javascripts/mathjax/tex-chtml.js).
// Markdown pages: pymdownx.arithmatex (generic mode) wraps each equation in \( \) or \[ \] inside an element of
// class "arithmatex". Notebook pages (mkdocs-jupyter): the markdown cells keep $...$ and $$...$$ inside elements
// of class "jp-RenderedMarkdown". Everything else (code, docstrings) is left alone: MathJax ignores every element
// with a class (".+") and everything inside it, unless the element has one of the classes above; elements without
// a class inherit (so the <p> of a markdown cell is searched, the <p> of a page's text is not).
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    ignoreHtmlClass: ".+",
    processHtmlClass: "arithmatex|jp-RenderedMarkdown|jp-MarkdownOutput",
  },
  chtml: {
    fontURL: new URL("mathjax/output/chtml/fonts/woff-v2", document.currentScript.src).href,
  },
};

// MathJax typesets each page once when it loads. (Material's recipe also re-typesets on its document$ signal,
// for instant navigation, which this site does not use; doing it on a normal load cleared the glyph styles of the
// equations MathJax had just rendered, leaving them blank.)
