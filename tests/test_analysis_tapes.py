"""Program model facts: GradientTape blocks (``FileContext.tapes``)."""

from __future__ import annotations

from analysis_support import context


def _tapes(source: str) -> list[tuple[str | None, bool, int]]:
    ctx = context(source)
    return [(t.name, t.persistent, ctx.line(t.with_node)) for t in ctx.tapes]


def test_tape_names_and_persistence() -> None:
    assert _tapes(
        """
        import tensorflow as tf
        with tf.GradientTape() as tape:
            pass
        with tf.GradientTape(persistent=True) as outer:
            pass
        with tf.GradientTape(persistent=False) as g:
            pass
        with tf.GradientTape(True) as positional:
            pass
        """
    ) == [("tape", False, 2), ("outer", True, 4), ("g", False, 6), ("positional", True, 8)]


def test_tape_bound_before_the_with_statement() -> None:
    assert _tapes(
        """
        import tensorflow as tf
        tape = tf.GradientTape(persistent=True)
        with tape:
            pass
        """
    ) == [("tape", True, 3)]


def test_two_tapes_in_one_with_statement() -> None:
    assert _tapes(
        """
        import tensorflow as tf
        with tf.GradientTape() as g1, tf.GradientTape() as g2:
            pass
        """
    ) == [("g1", False, 2), ("g2", False, 2)]


def test_tape_imported_by_name_or_through_compat() -> None:
    assert _tapes(
        """
        from tensorflow import GradientTape
        import tensorflow.compat.v2 as tf2
        with GradientTape() as a:
            pass
        with tf2.GradientTape() as b:
            pass
        """
    ) == [("a", False, 3), ("b", False, 5)]


def test_other_context_managers_are_not_tapes() -> None:
    assert (
        _tapes(
            """
            import tensorflow as tf
            with open("log.txt") as fh:
                pass
            with tf.name_scope("block"):
                pass
            with GradientTape() as not_imported:
                pass
            """
        )
        == []
    )
