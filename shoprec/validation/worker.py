"""A validation worker process: judge the batches named in a JSON request, answer in JSON.

Usage: python -m shoprec.validation.worker REQUEST ANSWER PARENT_PID. Exit code 0 with
verdicts, 3 when the validator itself broke (the message is in the answer). It dies with the
parent whose pid it is given: only that parent moves batches, so without it the work is moot.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

from shoprec.lifeline import die_with_parent
from shoprec.quiet import finish


def main(request: str, answer: str) -> int:
    # imported here, after the lifeline is set: Great Expectations takes seconds to import
    from shoprec.config import Settings
    from shoprec.validation.judge import ValidatorError, judge_batches

    req = json.loads(Path(request).read_text())
    settings = Settings(**req["settings"])
    try:
        verdicts = judge_batches([Path(d) for d in req["dirs"]], settings, Path(req["known"]))
    except ValidatorError as e:
        Path(answer).write_text(json.dumps({"validator_error": str(e)}))
        return 3
    Path(answer).write_text(json.dumps([v.to_json() for v in verdicts], default=str))
    return 0


if __name__ == "__main__":
    die_with_parent(int(sys.argv[3]))
    try:
        status = main(*sys.argv[1:3])
    except Exception:
        traceback.print_exc()  # the parent reports the tail of this stderr
        status = 1
    finish(status)  # no interpreter teardown: its leak report would bury a real error
