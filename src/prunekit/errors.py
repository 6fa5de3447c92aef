"""The one error type users see: a single line that says what is wrong and how to fix it."""


class PrunekitError(ValueError):
    """Bad input from a user: a config value, a file, a corpus.

    The message is one line naming the problem and the fix; the CLI prints it and exits with code 2.

    Example:
        >>> raise PrunekitError("train.lr=-0.1 must be > 0: set a positive learning rate")
        Traceback (most recent call last):
        ...
        prunekit.errors.PrunekitError: train.lr=-0.1 must be > 0: set a positive learning rate
    """
