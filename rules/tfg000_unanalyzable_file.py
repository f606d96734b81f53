from tflint_grad.rule import Invalid, Rule, Valid


class UnanalyzableFile(Rule):
    """The file cannot be parsed, so no other rule could check it.

    ## What it does
    Reports a file that is not valid Python 3 (a syntax error, Python 2 syntax such as
    `print x`, bytes that are not valid in the file's encoding) or a notebook that is not
    valid JSON, at the line of the problem and with the reason. The run goes on with
    the other files. In a notebook each code cell that does not parse (after IPython's
    magics, shell commands and help syntax are read as IPython reads them) gets its own
    finding at its cell and line, and the other cells are still analysed. Like ruff's
    syntax errors, it is reported whatever the selection (`select`, `ignore`,
    per-file-ignores, `# noqa`); a file that never mentions TensorFlow or Keras is
    skipped whatever its content.

    ## Why is this bad?
    A file that cannot be parsed cannot be linted: every gradient-flow bug in it stays
    hidden. Many TensorFlow answers online are Python 2 code pasted into a Python 3 project.

    ## Example
    ```python
    import tensorflow as tf
    print sess.run(loss)
    ```

    Use instead:
    ```python
    import tensorflow as tf
    print(sess.run(loss))
    ```
    """

    code = "TFG000"
    name = "unanalyzable-file"
    severity = "error"

    VALID = [
        Valid("import tensorflow as tf\nprint(tf.__version__)\n"),
        Valid("print 'not a TensorFlow file, so it is skipped'\n"),
    ]
    INVALID = [
        Invalid("import tensorflow as tf\nprint tf.__version__\n", line=2, message="Python 2 `print` statement"),
        Invalid(
            "import tensorflow as tf\ntry:\n    pass\nexcept ValueError, e:\n    pass\n", line=4, message="except X, e:"
        ),
        Invalid("import tensorflow as tf\nx = (1,\n", line=2, message="cannot parse"),
    ]
