"""The configurator every script shares: a block of plain values, overridden from a file and the command line.

A script defines its settings as plain module-level values with a comment each, then calls::

    config = configure(globals())

which overrides those values in place, in this order: ``--config FILE`` (TOML or JSON, flat keys), then
``--key=value`` / ``--key value`` arguments. Values are parsed to the type of the default: bool accepts
true/false/1/0/yes/no, lists accept comma-separated values. An unknown key or a bad value stops the script
with one line naming the key and listing the valid keys (a bad value read from a file: naming the file and
that key only) (exit status 2); ``--help`` prints the script's
docstring and every key with its default and comment.

Only the standard library is imported here, so ``--help`` and config errors answer at once.
"""
import errno
import functools
import io
import json
import os
import sys
import tokenize

from local.core.fileio import write_json_atomic
from local.core.quiet import quiet_tensorflow_import

CONFIG_TYPES = (bool, int, float, str, list)


class ConfigError(ValueError):
    """A config key or value that the script cannot use; its message is one line for the user."""

    status = 2  # the exit status :func:`stage_main` gives it


class StageError(ConfigError):
    """A stage cannot go on for a reason found while working (no dataset, a diverging loss); one line."""

    def __init__(self, message, status=2):
        super().__init__(message)
        self.status = status


def stage_main(main):
    """Decorate a script's ``main(argv=None)``: a ConfigError or StageError it raises ends the script with
    :func:`fail` (one line on stderr, its exit status), never a traceback; so does a full disk
    (:func:`disk_full_line`: reruns are correct, only the message was wrong)."""
    @functools.wraps(main)
    def run(argv=None):
        quiet_tensorflow_import()  # a stage's output holds its own lines, not TensorFlow's start-up chatter
        try:
            return main(argv)
        except ConfigError as e:
            fail(str(e), e.status)
        except OSError as e:
            if e.errno not in DISK_FULL_ERRNOS:
                raise
            # the half-written files' writers (Keras' zip of a checkpoint) fail again when collected at exit:
            # "Exception ignored ... seek of closed file" after the one line says nothing more
            sys.unraisablehook = lambda unraisable: None
            fail(disk_full_line(e))
    return run


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def disk_full_line(error, needed_bytes=None):
    """One line for a write that failed with ENOSPC/EDQUOT (``error``): the folder, the space left there and,
    when known, the space needed."""
    import shutil
    path = next((p for p in (getattr(error, "filename", None), getattr(error, "filename2", None)) if p), "")
    folder = os.path.dirname(os.path.abspath(os.fspath(path))) if path else os.getcwd()
    while os.path.basename(folder).startswith(".tmp-"):  # a file inside a temp folder (local.fileio.atomic_dir)
        folder = os.path.dirname(folder)
    probe = folder
    while probe and not os.path.isdir(probe):
        probe = os.path.dirname(probe)
    try:
        free = f"{shutil.disk_usage(probe or '.').free / 1e6:,.0f} MB free"
    except OSError:
        free = "free space unknown"
    needed = f", about {needed_bytes / 1e6:,.0f} MB more needed" if needed_bytes else ""
    what = "disk quota exceeded" if error.errno == errno.EDQUOT else "no space left on the disk"
    return (f"{what} of {folder} ({free}{needed}): free some space or write elsewhere, then run again "
            f"(a rerun goes on from what is complete)")


def check_minimums(config, minimums):
    """Raise ConfigError for the first key of ``minimums`` ({key: least value}) that ``config`` has below it."""
    for key, least in minimums.items():
        if key in config and config[key] < least:
            raise ConfigError(f"--{key}={config[key]}: must be at least {least}")


def check_choices(config, choices):
    """Raise ConfigError for the first key of ``choices`` ({key: accepted values}) whose value is not one of them."""
    for key, accepted in choices.items():
        if key in config and config[key] not in accepted:
            raise ConfigError(f"--{key}={config[key]}: expected {' or '.join(map(str, accepted))}")


def config_keys(namespace):
    """The config block of a script: its public module-level values of a plain type, in definition order."""
    return {k: v for k, v in namespace.items()
            if not k.startswith("_") and isinstance(v, CONFIG_TYPES) and not callable(v)}


def parse_value(key, text, default):
    """Parse the string ``text`` to the type of ``default``; raise ConfigError naming ``key`` if it does not fit."""
    if isinstance(default, bool):
        low = str(text).strip().lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"--{key}={text}: expected true or false")
    for kind, expected in ((int, "an integer"), (float, "a number")):
        if isinstance(default, kind):
            try:
                return kind(str(text).strip())
            except ValueError:
                raise ConfigError(f"--{key}={text}: expected {expected}") from None
    if isinstance(default, list):
        items = [t.strip() for t in str(text).split(",") if t.strip()]
        element = default[0] if default else ""
        return [parse_value(key, t, element) for t in items]
    return str(text)


def coerce_value(key, value, default):
    """Check a value read from a TOML/JSON file against the type of ``default`` (ints are fine for floats)."""
    if isinstance(value, str) and not isinstance(default, str):
        return parse_value(key, value, default)
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, list):
        if not isinstance(value, list):
            return coerce_value(key, [value], default)
        element = default[0] if default else ""
        return [coerce_value(key, v, element) for v in value]
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(f"{key}={value!r}: expected {type(default).__name__} like the default {default!r}")
    return value


def read_config_file(path):
    """Read a flat TOML (``.toml``) or JSON file of key = value pairs into a dict."""
    if os.path.isdir(path):
        raise ConfigError(f"--config {path}: is a folder, not a config file")
    if os.path.exists(path) and not os.path.isfile(path):  # /dev/zero, a FIFO: never read (it never ends)
        raise ConfigError(f"--config {path}: not a regular file (a device, FIFO or socket): pass a .toml or .json file")
    if not os.path.isfile(path):
        raise ConfigError(f"--config {path}: no such file")
    try:
        if path.lower().endswith(".toml"):  # x.TOML too: a JSON parser would call TOML a syntax error
            import tomllib
            with open(path, "rb") as f:
                data = tomllib.load(f)
        else:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
    except ValueError as e:
        raise ConfigError(f"--config {path}: cannot parse it ({str(e).splitlines()[0]})") from None
    except OSError as e:  # unreadable: permissions, an I/O error
        raise ConfigError(f"--config {path}: cannot read it ({e.strerror or e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a table of key = value pairs")
    return data


def split_arguments(argv):
    """Split ``argv`` into (config file or None, [(key, text), ...]); raise ConfigError on a stray argument."""
    config_file, pairs, i = None, [], 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--") or arg == "--":
            raise ConfigError(f"unexpected argument {arg!r}: use --key=value")
        key, eq, text = arg[2:].partition("=")
        if not eq:
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            if nxt is None or nxt.startswith("--"):
                text = None  # a bare --flag: switches a bool on, is an error for any other key
            else:
                text, i = nxt, i + 1
        key = key.replace("-", "_")
        if key == "config":
            if not text:  # a bare --config, or --config= (an unset variable): never silently no file
                raise ConfigError("--config needs a file: --config=FILE.toml")
            config_file = text
        else:
            pairs.append((key, text))
        i += 1
    return config_file, pairs


def resolve_config(defaults, argv):
    """Apply a config file then command-line overrides to ``defaults``; return the resolved dict.

    Raises ConfigError with a one-line message for an unknown key or a value of the wrong type.
    """
    config = dict(defaults)
    valid = ", ".join(defaults)

    def check_key(key):
        if key not in defaults:
            raise ConfigError(f"unknown config key '{key}'; valid keys: {valid}")

    config_file, pairs = split_arguments(argv)
    if config_file is not None:
        config.update(config_file_values(config_file, defaults))
    try:
        for key, text in pairs:
            check_key(key)
            if text is None:
                if not isinstance(defaults[key], bool):
                    raise ConfigError(f"--{key} needs a value: --{key}=VALUE")
                text = "true"
            config[key] = parse_value(key, text, defaults[key])
    except ConfigError as e:
        if "valid keys" in str(e):
            raise
        raise ConfigError(f"{e}; valid keys: {valid}") from None
    check_values(config)
    return config


def config_file_values(path, defaults):
    """The values of the config file ``path``, each checked against the type of its default in ``defaults``.

    Raises ConfigError naming the file: an unknown key (listing the valid keys), or a value of the wrong type
    or not finite, naming the file and that key only (``--config my.toml: concurrency = 'lots': expected an
    integer``)."""
    values = {}
    for key, value in read_config_file(path).items():
        if key not in defaults:
            raise ConfigError(f"--config {path}: unknown config key '{key}'; valid keys: {', '.join(defaults)}")
        try:
            values[key] = coerce_value(key, value, defaults[key])
            check_values({key: values[key]})
        except ConfigError as e:
            expected = str(e).partition(": expected ")[2] or str(e)
            raise ConfigError(f"--config {path}: {key} = {value!r}: expected {expected}") from None
    return values


# keys that count processes or threads, in every script: never negative, at most what the machine can run
COUNT_KEYS = ("workers", "threads", "concurrency")
MAX_COUNT_PER_CORE = 4


def max_count():
    """The largest process or thread count a key of :data:`COUNT_KEYS` may ask for on this machine."""
    return max(8, MAX_COUNT_PER_CORE * (os.cpu_count() or 1))


def check_values(config):
    """Raise ConfigError for the first value no key of any script accepts: a float (or float list) key that is
    nan or infinite (``--max_minutes=nan`` would be an unbounded run), or a :data:`COUNT_KEYS` count that is
    negative or above :func:`max_count` (``--workers=10000``, a 10,000-process pool)."""
    import math
    for key, value in config.items():
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise ConfigError(f"--{key}={value}: expected a finite number")
        if key in COUNT_KEYS and isinstance(value, int) and not isinstance(value, bool) \
                and not 0 <= value <= max_count():
            raise ConfigError(f"--{key}={value}: expected 0 to {max_count()} ({os.cpu_count()} cores here, "
                              f"{MAX_COUNT_PER_CORE} per core at most)")


def key_comments(source_path):
    """Map each top-level name assigned in ``source_path`` to the comment at the end of its line."""
    comments = {}
    try:
        with open(source_path, encoding="utf-8") as f:
            tokens = list(tokenize.generate_tokens(io.StringIO(f.read()).readline))
    except (OSError, tokenize.TokenError, SyntaxError):
        return comments
    line_name = {}
    for i, tok in enumerate(tokens):
        if (tok.type == tokenize.NAME and tok.start[1] == 0 and i + 1 < len(tokens)
                and tokens[i + 1].string == "="):
            line_name[tok.start[0]] = tok.string
        elif tok.type == tokenize.COMMENT and tok.start[0] in line_name:
            comments.setdefault(line_name[tok.start[0]], tok.string.lstrip("# ").strip())
    return comments


def help_text(defaults, doc, source_path):
    """The ``--help`` text: the script's docstring then one line per key with its default and comment."""
    comments = key_comments(source_path) if source_path else {}
    lines = [(doc or "").strip(), "", "Config keys (override with --key=value or --config file.toml):"]
    width = max((len(k) for k in defaults), default=0)
    for key, value in defaults.items():
        shown = ",".join(map(str, value)) if isinstance(value, list) else value
        lines.append(f"  --{key:<{width}} = {shown!s:<14} {comments.get(key, '')}".rstrip())
    return "\n".join(lines)


def configure(namespace, argv=None):
    """Override a script's config block in ``namespace`` (its ``globals()``) from ``--config`` and ``argv``.

    Returns the resolved config dict and writes the values back into ``namespace``. Prints the help and
    exits 0 on ``--help``; prints one line and exits 2 on an unknown key or a bad value.
    """
    argv = sys.argv[1:] if argv is None else argv
    defaults = config_keys(namespace)
    if any(a in ("-h", "--help") for a in argv):
        print(help_text(defaults, namespace.get("__doc__"), namespace.get("__file__")))
        sys.exit(0)
    try:
        config = resolve_config(defaults, argv)
    except ConfigError as e:
        fail(str(e))
    namespace.update(config)
    return config


def fail(message, status=2):
    """Stop the script with one line on stderr (a user mistake is never a traceback)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


def save_config(config, directory, name="config.json"):
    """Write ``config`` as JSON to ``directory/name`` atomically (local.core.fileio); return the path."""
    return write_json_atomic(os.path.join(directory, name), config)


class ModelSettings:
    """Mixin of the model-description dataclasses (local.model.wavenet.WaveNetConfig, local.model.tagger.TaggerConfig): the
    round trip to ``model.json``'s ``model`` dict, tuples saved as lists."""

    @classmethod
    def from_json(cls, data):
        """From ``model.json``'s ``model`` dict (the inverse of :meth:`to_json`); unknown keys are ignored."""
        import dataclasses
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})

    def to_json(self):
        """The JSON-able dict saved as ``model.json``'s ``model``: every field, tuples as lists."""
        import dataclasses
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
