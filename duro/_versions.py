"""Orchestration versions: which strings are versions, and how they order.

New instances start on the *latest* registered version, so the order decides which code runs.
Two grammars are accepted, and both order the way their users expect, pre-releases before
their release:

* PEP 440 (Python packaging): ``1``, ``1.2``, ``2.0.0rc1``, ``2.0.0-rc1``, ``1.0.post1``,
  ``1.0.dev3``, ``1!2.0``, with an optional leading ``v``;
* semantic versioning 2.0: ``2.0.0``, ``2.0.0-rc.1``, ``1.0.0-alpha.beta``, ``1.0.0+build.5``.

A string both grammars read (``2.0.0-rc1``) orders the same either way. Release numbers compare
as numbers with missing parts as zero (``1.0`` and ``1.0.0`` are the same version), and build
metadata (``+...``) does not take part in the order.
"""

from __future__ import annotations

import re

ACCEPTED = (
    "a PEP 440 version (1.2, 2.0.0rc1, 1.0.post1, 1.0.dev3) or a semantic version "
    "(2.0.0, 2.0.0-rc.1, 1.0.0+build.5)"
)

# Sort keys compare element by element; each part is tagged so that every key compares with
# every other (numbers before words, as semantic versioning orders pre-release identifiers).
Identifier = tuple[int, int | str]
VersionKey = tuple[int, tuple[int, ...], tuple[int, tuple[Identifier, ...]], int, int]

_PEP440 = re.compile(
    r"""
    v?
    (?:(?P<epoch>[0-9]+)!)?
    (?P<release>[0-9]+(?:\.[0-9]+)*)
    (?:[-_.]?(?P<pre_l>a|b|c|rc|alpha|beta|pre|preview)[-_.]?(?P<pre_n>[0-9]+)?)?
    (?P<post>-(?P<post_n1>[0-9]+)|[-_.]?(?:post|rev|r)[-_.]?(?P<post_n2>[0-9]+)?)?
    (?P<dev>[-_.]?dev[-_.]?(?P<dev_n>[0-9]+)?)?
    (?:\+[a-z0-9]+(?:[-_.][a-z0-9]+)*)?
    """,
    re.VERBOSE | re.IGNORECASE,
)
_PRE_PHASE = {"a": "a", "alpha": "a", "b": "b", "beta": "b"} | dict.fromkeys(
    ("c", "rc", "pre", "preview"), "rc"
)

_SEMVER = re.compile(
    r"""
    (?P<major>0|[1-9][0-9]*)\.(?P<minor>0|[1-9][0-9]*)\.(?P<patch>0|[1-9][0-9]*)
    (?:-(?P<pre>(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)
        (?:\.(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*))?
    (?:\+[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*)?
    """,
    re.VERBOSE,
)

_DEV_ONLY = (0, ())
"""A development release without a pre-release tag (``1.0.dev1``) sorts before ``1.0a1``."""
_FINAL = (2, ())
"""No pre-release: after every pre-release of the same release."""
_NO_DEV = 1 << 62
"""No development release: after every ``.devN`` of the same version."""


def version_key(version: str) -> VersionKey:
    """The sort key of ``version``; ``ValueError`` naming the accepted forms otherwise."""
    pep440 = _PEP440.fullmatch(version)
    if pep440 is not None:
        return _pep440_key(pep440)
    semver = _SEMVER.fullmatch(version)
    if semver is not None:
        return _semver_key(semver)
    raise ValueError(f"{version!r} is not a version; use {ACCEPTED}")


def _release(parts: list[int]) -> tuple[int, ...]:
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def _pep440_key(match: re.Match[str]) -> VersionKey:
    epoch = int(match["epoch"] or 0)
    release = _release([int(p) for p in match["release"].split(".")])
    has_post, has_dev = match["post"] is not None, match["dev"] is not None
    pre: tuple[int, tuple[Identifier, ...]]
    if match["pre_l"]:
        phase = _PRE_PHASE[match["pre_l"].lower()]
        pre = (1, ((1, phase), (0, int(match["pre_n"] or 0))))
    elif has_dev and not has_post:
        pre = _DEV_ONLY
    else:
        pre = _FINAL
    post = int(match["post_n1"] or match["post_n2"] or 0) + 1 if has_post else 0
    dev = int(match["dev_n"] or 0) if has_dev else _NO_DEV
    return (epoch, release, pre, post, dev)


def _semver_key(match: re.Match[str]) -> VersionKey:
    release = _release([int(match["major"]), int(match["minor"]), int(match["patch"])])
    pre_text = match["pre"]
    pre: tuple[int, tuple[Identifier, ...]] = _FINAL
    if pre_text is not None:
        pre = (1, tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre_text.split(".")))
    return (0, release, pre, 0, _NO_DEV)
