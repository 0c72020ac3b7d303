"""How printed lines and reports write a count of things."""


def plural(n, word):
    """'1 user', '1,208 users'."""
    return f"{n:,} {word}" + ("" if n == 1 else "s")
