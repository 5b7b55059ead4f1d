"""The usual enrollment script, re-created faithfully as the baseline (see ../shared/reference/).

It is the university IT team's script line for line: requests + tenacity, one POST at a time,
retrying only on a 403 whose body says "Rate Limit Exceeded", logging and moving on for anything
else — so a hosted-Canvas 429 is a lost record, and `TAEnrollment` (Canvas wants `TaEnrollment`)
is a 400. Those mistakes are the point; do not fix them.

Only two things are added, outside the script's own logic:
- `BASELINE_TIME_SCALE`: the simulator runs time-scaled, so the script's tenacity waits
  (2 s .. 60 s) are divided by the same factor, to stay equal in the simulator's time;
- a `__main__` harness that reads the records from a JSON file and runs them either sequentially
  (the script as written) or in a fixed pool of N threads (`--threads 11`), then prints one JSON
  line: {"elapsed": seconds, "records": n, "raised": how many records ended in an exception}.

    CANVAS_BASE_URL=http://127.0.0.1:8900 CANVAS_API_TOKEN=... \
        python benchmarks/baseline_script.py records.json [--threads 11]
"""

import logging
import os

import requests
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

try:  # the original calls load_dotenv(); python-dotenv is not a canvas-tui dependency
    from dotenv import load_dotenv
except ImportError:  # pragma: no cover - depends on the environment

    def load_dotenv() -> bool:
        return False


# Load configuration
load_dotenv()
CANVAS_URL = os.getenv("CANVAS_BASE_URL")  # e.g., https://canvas.globaltech.edu
API_TOKEN = os.getenv("CANVAS_API_TOKEN")
TIME_SCALE = float(os.getenv("BASELINE_TIME_SCALE", "1"))  # added: see the module docstring

headers = {"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"}

logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(levelname)s - %(message)s")


class RateLimitException(Exception):
    pass


@retry(
    wait=wait_exponential(multiplier=1 / TIME_SCALE, min=2 / TIME_SCALE, max=60 / TIME_SCALE),
    stop=stop_after_attempt(5),
    retry=retry_if_exception_type(RateLimitException),
)
def enroll_user(course_id: str, user_id: str, role: str = "StudentEnrollment"):
    """
    Idempotent function to enroll a user in a Canvas course.
    """
    endpoint = f"{CANVAS_URL}/api/v1/courses/{course_id}/enrollments"
    payload = {
        "enrollment": {
            "user_id": user_id,
            "type": role,
            "enrollment_state": "active",
            "notify": False,  # Don't spam students during bulk syncs
        }
    }

    response = requests.post(endpoint, headers=headers, json=payload)  # noqa: S113 - as written

    if response.status_code == 403 and "Rate Limit Exceeded" in response.text:
        logging.warning(f"Rate limit hit while enrolling {user_id}. Backing off.")
        raise RateLimitException("Canvas API rate limit exceeded")

    if response.status_code in (200, 201):
        logging.info(f"Successfully enrolled user {user_id} in course {course_id}.")
        return response.json()
    else:
        logging.error(f"Failed to enroll user {user_id}: {response.text}")
        response.raise_for_status()


# Example usage fetching from a hypothetical local DB query
def process_enrollment_queue(enrollment_records):
    for record in enrollment_records:
        try:
            # record format: {'canvas_course_id': '101', 'canvas_user_id': '5002', 'role': 'StudentEnrollment'}
            enroll_user(record["canvas_course_id"], record["canvas_user_id"], record["role"])
        except Exception as e:
            logging.error(f"Critical failure processing record {record}: {e!s}")


def get_all_course_enrollments(course_id: str):
    endpoint = f"{CANVAS_URL}/api/v1/courses/{course_id}/enrollments"
    enrollments = []

    while endpoint:
        response = requests.get(endpoint, headers=headers)  # noqa: S113 - as written
        response.raise_for_status()
        enrollments.extend(response.json())

        # Extract the 'next' URL from the Link header
        links = response.links
        if "next" in links:  # noqa: SIM108 - kept as the original wrote it
            endpoint = links["next"]["url"]
        else:
            endpoint = None

    return enrollments


# ---- benchmark harness (not part of the original script) ----------------------------------------


def _main(argv: list[str]) -> int:
    import argparse
    import json
    import time
    from concurrent.futures import ThreadPoolExecutor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", help="JSON list of {canvas_course_id, canvas_user_id, role}")
    parser.add_argument("--threads", type=int, default=0, help="fixed pool size; 0 = sequential")
    args = parser.parse_args(argv)
    with open(args.records, encoding="utf-8") as handle:
        records = json.load(handle)
    raised = 0

    def one(record: dict[str, str]) -> None:
        nonlocal raised
        try:
            enroll_user(record["canvas_course_id"], record["canvas_user_id"], record["role"])
        except Exception as e:  # the script's own handling, counted
            raised += 1
            logging.error(f"Critical failure processing record {record}: {e!s}")

    started = time.perf_counter()
    if args.threads:
        with ThreadPoolExecutor(max_workers=args.threads) as pool:
            list(pool.map(one, records))
    else:
        for record in records:  # process_enrollment_queue, counting what it swallows
            one(record)
    elapsed = time.perf_counter() - started
    print(json.dumps({"elapsed": elapsed, "records": len(records), "raised": raised}), flush=True)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_main(sys.argv[1:]))
