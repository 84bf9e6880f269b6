"""etcd's ``ETCD_*`` environment variables for ``kvstore serve``'s flags.

etcd takes ``ETCD_<FLAG>`` for every flag ``--<flag>`` (upper case, dashes as underscores), and
kvstore does the same, as etcd 3.4's pkg/flags (SetFlagsFromEnv, verifyEnv) does:

- a variable whose flag is not on the command line sets it (its flag's own converter applied),
  logged as ``recognized and used environment variable ETCD_NAME=x``; an empty value is no
  value;
- a variable whose flag is on the command line too is fatal (exit 1), even when empty:
  ``conflicting environment variable "ETCD_NAME" is shadowed by corresponding command-line
  flag (either unset environment variable or disable flag)``;
- any other ``ETCD_`` variable (unknown, or set but empty) gets a warning,
  ``unrecognized environment variable ETCD_FOO=1``, and the server goes on. ``ETCDCTL_*``
  (etcdctl's) does not start with ``ETCD_`` and is left alone;
- a value its flag refuses is fatal (exit 1), after the warnings: ``error verifying flags,
  invalid value "abc" for ETCD_SNAPSHOT_COUNT: parse error.`` Numbers, durations and booleans
  say ``parse error``, as Go's flag package does; other flags say what their converter said.
  When several are bad, the last in flag-name order is reported, as etcd does.

Booleans (``--auto-tls``, ``--client-cert-auth``) take Go's strconv.ParseBool values.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence

PREFIX = "ETCD_"

logger = logging.getLogger("kvstore")

# Go's strconv.ParseBool
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})

_UNSET = object()


class EnvFlagError(Exception):
    """A bad ETCD_* value, or one its command-line flag shadows: the server does not start."""


def env_key(option: str) -> str:
    """``--data-dir`` -> ``ETCD_DATA_DIR``."""
    return PREFIX + option.lstrip("-").upper().replace("-", "_")


def apply_env_flags(args: argparse.Namespace, serve_parser: argparse.ArgumentParser,
                    argv: Sequence[str] | None = None) -> None:
    """Set ``args``' serve flags from the environment, as etcd does; on a conflict or a bad
    value, say so on stderr in one line and exit 1 (etcd's status). Logging must be set up."""
    try:
        level_before = args.log_level
        apply(args, serve_parser, _serve_argv(sys.argv[1:] if argv is None else argv), os.environ)
    except EnvFlagError as e:
        print(f"kvstore: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    if args.log_level != level_before:  # ETCD_LOG_LEVEL: logging was set up from the flag's default
        logging.getLogger().setLevel({"warn": "WARNING"}.get(args.log_level, args.log_level.upper()))


def apply(args: argparse.Namespace, parser: argparse.ArgumentParser, argv: Sequence[str],
          environ: Mapping[str, str]) -> list[str]:
    """Set the flags of ``parser`` not given in ``argv`` (its own arguments, as parsed into
    ``args``) from ``environ``; the variables used, in order. Raises EnvFlagError."""
    flags = settable_flags(parser)
    given = given_dests(parser, argv)
    shadowed = {key for key, action in flags.items() if action.dest in given}
    used: list[str] = []
    error = None
    # etcd visits its flags in name order and keeps the last error
    for key, action in sorted(flags.items(), key=lambda kv: kv[1].option_strings[0]):
        if key in shadowed:
            continue
        value = environ.get(key, "")
        if value == "":
            continue
        used.append(key)
        try:
            setattr(args, action.dest, convert(action, value))
        except ValueError as e:
            error = f"invalid value {_quote(value)} for {key}: {e}"
            continue
        logger.info("recognized and used environment variable %s=%s", key, value)
    for key, value in environ.items():
        if key in used:
            continue
        if key in shadowed:
            raise EnvFlagError(f"conflicting environment variable {_quote(key)} is shadowed by "
                               "corresponding command-line flag (either unset environment "
                               "variable or disable flag)")
        if key.startswith(PREFIX):
            logger.warning("unrecognized environment variable %s=%s", key, value)
    if error is not None:
        raise EnvFlagError(f"error verifying flags, {error}. See '{parser.prog} --help'.")
    return used


def settable_flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """ETCD_* name -> the flag it sets: the flags that take one value, and the switches."""
    flags: dict[str, argparse.Action] = {}
    for action in parser._actions:
        if not isinstance(action, argparse._StoreAction | argparse._StoreConstAction):
            continue  # --help; append and count actions (none among serve's)
        if isinstance(action, argparse._StoreAction) and action.nargs not in (None, "?"):
            continue
        for option in action.option_strings:
            if option.startswith("--"):
                flags[env_key(option)] = action
    return flags


def given_dests(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """The dests of the flags on the command line (even when given their default value):
    parsed again onto a namespace where every dest is already set, so argparse fills in no
    default and what it sets is what was given (abbreviations and --flag=value included)."""
    namespace = argparse.Namespace(**{a.dest: _UNSET for a in parser._actions})
    parser.parse_args(list(argv), namespace=namespace)
    return {dest for dest, value in vars(namespace).items() if value is not _UNSET}


def convert(action: argparse.Action, value: str) -> object:
    """An environment value as the flag's converter takes it; ValueError with etcd's words."""
    if isinstance(action, argparse._StoreConstAction):  # store_true/store_false: a Go bool
        if value in _TRUE:
            return action.const
        if value in _FALSE:
            return action.default
        raise ValueError("parse error")
    converter = action.type or str
    if not callable(converter):  # a name registered with parser.register: not used by serve
        raise ValueError(f"cannot convert with {converter!r}")
    try:
        result = converter(value)
    except argparse.ArgumentTypeError as e:
        raise ValueError("parse error" if _numeric(action) else str(e)) from None
    except (TypeError, ValueError):
        raise ValueError("parse error") from None
    if action.choices is not None and result not in action.choices:
        choices = ", ".join(_quote(str(c)) for c in action.choices)
        raise ValueError(f"invalid choice {_quote(value)} (choose from {choices})")
    return result


def _numeric(action: argparse.Action) -> bool:
    """A number or a duration: Go's flag package calls any bad one a parse error."""
    if isinstance(action.default, bool):
        return False
    if isinstance(action.default, int | float):
        return True
    if not callable(action.type):
        return False
    try:
        return isinstance(action.type("1"), int | float)
    except Exception:
        return False


def _serve_argv(argv: Sequence[str]) -> list[str]:
    """The serve command's own arguments (kvstore's parser has no option before it)."""
    argv = list(argv)
    return argv[argv.index("serve") + 1:] if "serve" in argv else argv


def _quote(s: str) -> str:
    """Go's %q, near enough: double quotes, backslash escapes."""
    return json.dumps(s, ensure_ascii=False)


def without_etcd_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of a partition's worker: the supervisor has turned the ETCD_* variables
    into the flags it passes (and warned about the rest); left in, each would conflict with
    its flag."""
    return {k: v for k, v in environ.items() if not k.startswith(PREFIX)}
