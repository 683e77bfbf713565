"""``persona-engine``: the command-line face of the package.

Every command is a thin layer over a package function, so the CLI, the app and
a notebook do the same thing. Errors in the user's input print one line and
exit with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from persona_engine.cli import (codebook_command, evaluation_commands, persona_commands, steering_commands,
                                study_commands)
from persona_engine.cli.options import common_arguments, data_arguments, llm_arguments, soft_prompt_arguments
from persona_engine.errors import DataError, DataWarning

"""The chat's ``--source`` choices."""


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for reports that record their command
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", DataWarning)
            warnings.showwarning = _one_line
            return args.run(args) or 0
    except DataError as error:
        if args.debug:
            raise
        print(f"persona-engine: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and cut short: not an error
        sys.stdout = open(os.devnull, "w")
        return 0
    except KeyboardInterrupt:
        print("persona-engine: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # an unexpected failure still gets one readable line
        if args.debug:
            raise
        print(f"persona-engine: unexpected error: {type(error).__name__}: {error} "
              "(run again with --debug for details)", file=sys.stderr)
        return 1


def _one_line(message, category, *args, **kwargs) -> None:
    """Warnings about the user's input as one line each; any other warning as Python shows it."""
    if issubclass(category, DataWarning):
        print(f"persona-engine: warning: {message}", file=sys.stderr)
    else:
        _show_warning(message, category, *args, **kwargs)


_show_warning = warnings.showwarning


def _build_parser() -> argparse.ArgumentParser:
    """The ``persona-engine`` parser: each command module registers its own commands."""
    from persona_engine import __version__

    parser = argparse.ArgumentParser(
        prog="persona-engine",
        description="Find latent opinion cohorts in survey data and steer a language model toward them.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command")
    common, data_args, llm_args = common_arguments(), data_arguments(), llm_arguments()
    spm_args = soft_prompt_arguments()  # shared by train-steering and evaluate-steering
    study_commands.add_parsers(sub, common, data_args)
    codebook_command.add_parser(sub, [common, data_args])
    steering_commands.add_parsers(sub, common, llm_args, spm_args)
    persona_commands.add_parsers(sub, common, llm_args)
    evaluation_commands.add_parser(sub, [common, llm_args, spm_args])
    return parser
