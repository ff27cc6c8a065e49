"""The check counter shared by the deployment test scripts."""

from __future__ import annotations


class Fatal(Exception):
    """A failure after which the remaining checks cannot run."""


class Checks:
    """Counts named checks, prints each, and prints the `N passed, M failed` summary."""

    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"ok    {name}", flush=True)
        else:
            self.failed.append(name)
            print(f"FAIL  {name}" + (f": {detail}" if detail else ""), flush=True)
        return ok

    def fatal(self, name: str, detail: str) -> None:
        self.check(name, False, detail)
        raise Fatal(name)

    def summary(self) -> int:
        """Print the failed checks and the closing line; return the exit code."""
        if self.failed:
            print("failed checks:")
            for name in self.failed:
                print(f"  - {name}")
        print(f"{self.passed} passed, {len(self.failed)} failed")
        return 1 if self.failed else 0
