"""A small corpus of real English for demos and benchmarks with real models: no download, no data file.

Every Python installation carries thousands of hand-written English sentences: the docstrings of its
standard library. A document here is the first sentence of the docstring of one public function, class or
method, and its topic is the area of the library it comes from ("concurrency", "dates and times", ...).
Unlike the synthetic corpus, the wording varies freely, so a model has to understand it rather than match
a template. The corpus is deterministic for a given Python version (it is read from the running one).
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import itertools
import re
from collections.abc import Iterator
from functools import cache
from types import ModuleType
from typing import Any

from proxy.demo.corpus import CorpusDoc

# Topic -> where its sentences come from: modules, or builtin types (their methods).
_SOURCES: dict[str, tuple[str, ...]] = {
    "text processing": ("str", "string", "re", "textwrap", "difflib", "unicodedata"),
    "files and paths": ("os", "os.path", "pathlib", "shutil", "glob", "fnmatch", "tempfile", "filecmp"),
    "numbers and math": ("math", "cmath", "statistics", "fractions", "decimal", "random"),
    "dates and times": ("datetime", "calendar", "time", "zoneinfo"),
    "networking": (
        "socket",
        "ssl",
        "urllib.parse",
        "urllib.request",
        "http.client",
        "http.cookies",
        "ipaddress",
        "smtplib",
    ),
    "concurrency": (
        "threading",
        "multiprocessing",
        "asyncio",
        "concurrent.futures",
        "queue",
        "subprocess",
        "selectors",
    ),
    "data formats": (
        "json",
        "csv",
        "pickle",
        "zipfile",
        "tarfile",
        "gzip",
        "base64",
        "struct",
        "configparser",
    ),
    "data structures": (
        "dict",
        "list",
        "set",
        "collections",
        "heapq",
        "bisect",
        "itertools",
        "functools",
        "array",
    ),
}
_PER_TOPIC = 60
"""Keeps topics balanced (os alone has hundreds of docstrings) and the corpus at a few hundred documents."""

# Written by hand: what a person would type when looking for something in each area.
REAL_QUERIES: dict[str, tuple[str, ...]] = {
    "text processing": (
        "replace every match of a regular expression in a string",
        "wrap a long paragraph to a fixed line width",
        "compare two texts and show the lines that differ",
        "convert a string to upper case",
        "remove whitespace from both ends of a string",
        "look up the name of a unicode character",
    ),
    "files and paths": (
        "copy a whole directory tree to another place",
        "check whether a file exists",
        "list the files in a folder that match a wildcard pattern",
        "create a temporary directory that is deleted afterwards",
        "get the size of a file in bytes",
        "split a path into directory and file name",
    ),
    "numbers and math": (
        "square root of a number",
        "compute the median and standard deviation of a list of values",
        "pick a random element from a sequence",
        "exact decimal arithmetic for money",
        "greatest common divisor of two integers",
        "logarithm of a number in a given base",
    ),
    "dates and times": (
        "difference between two dates in days",
        "current time in UTC",
        "parse a date from a string with a format",
        "is this year a leap year",
        "convert a timestamp to local time",
        "time zone offset from UTC",
    ),
    "networking": (
        "open a TCP connection to a server",
        "split a URL into scheme, host and path",
        "send an HTTP request and read the response",
        "encrypt a connection with TLS certificates",
        "check whether an IP address belongs to a network",
        "send an email through a mail server",
    ),
    "concurrency": (
        "run a function in a background thread",
        "wait until another thread signals an event",
        "limit how many workers use a resource at once",
        "run a shell command and capture its output",
        "schedule coroutines on an event loop",
        "a queue for passing work between threads safely",
    ),
    "data formats": (
        "serialize an object to a JSON string",
        "read rows from a comma separated values file",
        "compress data into a zip archive",
        "save a Python object to a file and load it back",
        "encode binary data as base64 text",
        "pack numbers into bytes with a fixed layout",
    ),
    "data structures": (
        "count how often each item occurs",
        "keep a list sorted while inserting elements",
        "get the smallest items from a heap",
        "a double-ended queue with fast appends on both sides",
        "combine several iterables into one sequence",
        "cache the results of an expensive function",
    ),
}

_SENTENCE = re.compile(r"^(.+?[.!?])(?=\s|$)", re.S)
_MARKUP = re.compile(r"``|:\w+:`([^`]*)`|\*(?=\w)|(?<=\w)\*")
_C_MODULES = {"os": "posix"}
"""C modules whose names do not follow the usual `_name` for a module's accelerator."""


def real_corpus(limit: int | None = None) -> list[CorpusDoc]:
    """Up to `limit` documents (all when None), topics interleaved so any prefix covers every topic."""
    docs = list(itertools.islice(_interleaved(), limit))
    return [CorpusDoc(f"doc-{n:07d}", text, topic) for n, (topic, text) in enumerate(docs)]


def real_queries(count: int) -> list[str]:
    """`count` hand-written queries, topics interleaved, repeating the list when more are asked for."""
    rounds = itertools.zip_longest(*REAL_QUERIES.values())
    every = [query for round_ in rounds for query in round_ if query is not None]
    return list(itertools.islice(itertools.cycle(every), count))


def _interleaved() -> Iterator[tuple[str, str]]:
    per_topic = [[(topic, text) for text in _sentences(topic)] for topic in _SOURCES]
    seen: set[str] = set()  # a sentence two topics share (a method both modules define) goes to the first
    for topic, text in itertools.chain.from_iterable(itertools.zip_longest(*per_topic, fillvalue=("", ""))):
        if text and text not in seen:
            seen.add(text)
            yield topic, text


@cache
def _sentences(topic: str) -> tuple[str, ...]:
    seen: dict[str, None] = {}  # an ordered set: deterministic, first occurrence wins
    for source in _SOURCES[topic]:
        for obj in _documented(source):
            # __doc__, not inspect.getdoc: getdoc falls back to a base class's text ("Common base class for
            # all non-exit exceptions." for every exception), which says nothing about the object.
            sentence = _first_sentence(inspect.cleandoc(obj.__doc__ or ""))
            if sentence is not None:
                seen.setdefault(sentence)
    return tuple(itertools.islice(seen, _PER_TOPIC))


def _documented(source: str) -> Iterator[Any]:
    """Public functions and classes of a module (and their methods), or the methods of a builtin type."""
    if hasattr(builtins, source):
        yield from _public_routines(getattr(builtins, source))
        return
    module = importlib.import_module(source)
    for _, obj in inspect.getmembers(module):
        if _defined_in(obj, module):
            yield obj
            if inspect.isclass(obj):
                yield from _public_routines(obj)


def _public_routines(cls: type) -> Iterator[Any]:
    """Methods `cls` defines itself: inherited ones belong to (and are read with) the base class."""
    for name, member in inspect.getmembers(cls):
        if name in vars(cls) and not name.startswith("_") and inspect.isroutine(member):
            yield member


def _defined_in(obj: Any, module: ModuleType) -> bool:
    """Whether `obj` is a public function or class of `module` itself, not one it imported from elsewhere."""
    if getattr(obj, "__name__", "_").startswith("_") or not (inspect.isroutine(obj) or inspect.isclass(obj)):
        return False
    home = getattr(obj, "__module__", None) or module.__name__
    # C accelerators (_socket, _pickle, posix for os) and submodules (json.encoder) count as the module.
    names = {module.__name__, _C_MODULES.get(module.__name__, f"_{module.__name__}")}
    return home in names or home.startswith(f"{module.__name__}.")


def _first_sentence(doc: str) -> str | None:
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    match = _SENTENCE.match(_MARKUP.sub(lambda m: m.group(1) or "", paragraph))
    if match is None:
        return None
    sentence = match.group(1)
    # Skip signatures ("f(x) -> y"), doctests, fragments and run-on paragraphs: a document is one plain sentence.
    plain = sentence[0].isupper() and "->" not in sentence and ">>>" not in sentence
    return sentence if plain and 30 <= len(sentence) <= 200 else None
