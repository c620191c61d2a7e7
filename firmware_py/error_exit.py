"""The one way ``accessctl`` and ``accessctl-sim`` end on an error the user can act on.

An :class:`~firmware_py.errors.AccessCtlError` is printed as one message (it says what is wrong
and what to do) and the exit status is 2; so is a file the command cannot read or write. Ctrl-C
is status 130, and output piped into ``head`` that closes early is not an error. Anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from firmware_py.errors import AccessCtlError

USAGE_ERROR = 2  # the status argparse uses for a wrong command line
INTERRUPTED = 130


def run_reporting_errors(prog: str, command: Callable[[], int]) -> int:
    """Run ``command``; its status, or 2 with ``prog: message`` on standard error for a user's error."""
    try:
        return command()
    except AccessCtlError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        return INTERRUPTED
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except OSError as exc:
        if exc.filename is None:
            raise
        print(f"{prog}: {exc.filename}: {exc.strerror or exc}; check the path and its permissions",
              file=sys.stderr)
        return USAGE_ERROR
