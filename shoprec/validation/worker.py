"""A validation worker process: judge the batches named in a JSON request, answer in JSON.

Exit code 0 with verdicts, 3 when the validator itself broke (the message is in the answer).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from shoprec.config import Settings
from shoprec.validation.judge import ValidatorError, judge_batches


def main(request: str, answer: str) -> int:
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
    sys.exit(main(*sys.argv[1:3]))
