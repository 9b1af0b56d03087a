"""What a ROM's contents say about its hardware."""

__all__ = ["varying_bits"]


def varying_bits(words):
    """The mask of the bits that are not the same in every word of ``words``: a ROM's
    other bits are constants, and synthesis keeps only these."""
    words = list(words)
    mask = 0
    for w in words:
        mask |= w ^ words[0]
    return mask
