"""The ledger of test-set scorings (docs/test_set_uses.md) and the README's count of them.

The selection protocol counts every scoring of the 500 test images. A benchmark that scores
them adds its own line here as each fit finishes, so the count is true even when a long run
is interrupted or nobody is watching it."""

import fcntl
import hashlib
import re
import tempfile
from pathlib import Path

from cifar_moe.core.atomic_files import atomic_write_text

REPO_ROOT = Path(__file__).resolve().parents[1]
LEDGER = REPO_ROOT / "docs" / "test_set_uses.md"
README = REPO_ROOT / "README.md"
ROW = re.compile(r"^\| (\d+) \|", re.MULTILINE)
COUNT = re.compile(r"Count since the protocol: \*\*(\d+)\*\*")
README_COUNT = re.compile(r"\*\*(\d+) scorings since the protocol\*\*")


def _counted_readme(text: str, number: int, readme: Path) -> str:
    if not README_COUNT.search(text):
        raise ValueError(f"{readme}: no '**N scorings since the protocol**' to update")
    return README_COUNT.sub(f"**{number} scorings since the protocol**", text)


def record_test_use(what: str, why: str, result: str, ledger: Path = LEDGER,
                    readme: Path | None = None) -> int:
    """Append one scoring to the ledger's table and update its count, and the README's when
    the ledger is the project's own (``readme`` names another); return the new count."""
    if readme is None and ledger.resolve() == LEDGER:
        readme = README
    # Locked: two benchmark processes (--trainers peer / template) may score at once. The lock
    # is a file of its own: the ledger is replaced on each write, so it cannot hold one.
    key = hashlib.sha1(str(ledger.resolve()).encode()).hexdigest()[:12]
    with open(Path(tempfile.gettempdir()) / f"cifar_moe_ledger_{key}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = ledger.read_text()
        rows = [int(n) for n in ROW.findall(text)]
        if not rows:
            raise ValueError(f"{ledger}: no table of scorings to append to")
        if not COUNT.search(text):
            raise ValueError(f"{ledger}: no 'Count since the protocol: **N**' line")
        number = max(rows) + 1
        last = list(ROW.finditer(text))[-1]
        end = text.index("\n", last.start()) + 1
        text = text[:end] + f"| {number} | {what} | {why} | {result} |\n" + text[end:]
        readme_text = None if readme is None else _counted_readme(
            readme.read_text(), number, readme)
        atomic_write_text(ledger, COUNT.sub(f"Count since the protocol: **{number}**", text))
        if readme_text is not None:
            atomic_write_text(readme, readme_text)
    return number


def record_fit_scoring(trainer: str, seed: int, epochs: int, result_file: str,
                       test_acc: float, ledger: Path = LEDGER) -> None:
    """The ledger line of one ``bench_peer.py --test`` fit (seed s holds out fold s)."""
    what = (f"`bench_peer.py --test`, {trainer}, fold {seed}, seed {seed}, {epochs} epochs "
            f"(`{result_file}`)")
    number = record_test_use(what, "the benchmark's one test scoring per fit, for the README",
                             f"{100 * test_acc:.1f} %", ledger)
    print(f"test-set scoring #{number} recorded in {ledger}")
