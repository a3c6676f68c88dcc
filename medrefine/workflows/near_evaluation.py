"""NeAR refinement scored: input and refined labels against a reference, the before/after table,
the guard's fallbacks, the report and the summary ``make demo`` prints.

Split from :mod:`medrefine.workflows.near` (which re-exports these names, so configs call
``medrefine.workflows.near.evaluate_refinement``); nothing here chooses anything: a reference is
for reporting only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["before_after_table", "evaluate_refinement", "format_evaluation"]

logger = logging.getLogger(__name__)


def before_after_table(before: Any, after: Any, *, metric: str = "dice") -> Any:
    """Per-class mean of ``metric`` before and after refinement, with the difference.

    Args:
        before, after: tidy metric DataFrames (``medrefine.metrics`` format).
        metric: which metric. Defaults to ``"dice"``.

    Returns:
        DataFrame ``class_id, class_name, before, after, delta`` plus a last row ``mean foreground``.
    """
    import pandas as pd

    def means(df: Any) -> Any:
        sel = df[df["metric"] == metric]
        return sel.groupby(["class_id", "class_name"])["value"].mean()

    table = pd.concat({"before": means(before), "after": means(after)}, axis=1).reset_index()
    table["delta"] = table["after"] - table["before"]
    per_case = {name: df[df["metric"] == metric].groupby("case")["value"].mean().mean() for name, df in
                (("before", before), ("after", after))}
    total = {"class_id": -1, "class_name": "mean foreground", "before": per_case["before"], "after": per_case["after"],
             "delta": per_case["after"] - per_case["before"]}
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)


def evaluate_refinement(
    cases: Sequence[Mapping[str, Any]],
    output_dir: str | Path,
    *,
    classes: Mapping[int, str] | int,
    refined: Sequence[Mapping[str, str]] | None = None,
    nsd_tolerance_mm: float = 1.0,
    report: bool = True,
    title: str = "medrefine: annotation refinement",
) -> dict[str, Any]:
    """Score the refined labels and write the before/after report.

    Writes in ``output_dir``: ``metrics_refined.csv`` and ``metrics_input.csv`` (refined and input
    labels against the clean reference, when the cases have one), ``metrics_change.csv`` (refined
    against the input label: how much was changed), ``before_after.csv`` and ``report/``, whose
    top lists the structures where the guard kept the input (case, structure, reason).

    Args:
        cases: from :func:`load_refinement_cases` (with source paths).
        output_dir: the folder :func:`refine_cases` wrote to.
        classes: class table or count (background included).
        refined: the dicts :func:`refine_cases` returned (paths and the guard's decisions);
            default: ``refined/<case>.nii.gz`` and the decisions in ``changes.csv``.
        nsd_tolerance_mm: tolerance of the normalised surface Dice.
        report: write the HTML/Markdown report.
        title: report title.

    Returns:
        ``{"before_after": DataFrame or None, "guard": DataFrame or None, "report": Path or None,
        "metrics": {name: csv path}}``; ``guard`` holds the guard's decisions (``case``,
        ``class_id``, ``class_name``, ``action``, ``reason``, ``rule``, ...), None when the guard
        did not run.
    """
    from medrefine.metrics import evaluate_pairs, write_metrics_csv
    from medrefine.metrics.evaluate import build_sources, write_sources

    output_dir = Path(output_dir)
    refined_paths = {r["case"]: r["refined"] for r in refined} if refined else {
        str(c["case"]): str(output_dir / "refined" / f"{c['case']}.nii.gz") for c in cases
    }
    if isinstance(classes, int):
        from medrefine.data.classes import default_classes

        classes = default_classes(classes)
    images = {str(c["case"]): c.get("image_path") for c in cases}
    out: dict[str, Any] = {"before_after": None, "guard": _guard_table(refined, output_dir, classes), "report": None,
                           "metrics": {}}
    kept = None if out["guard"] is None else out["guard"][out["guard"]["action"].isin(["kept_input", "restored_parts"])]

    def score(name: str, pairs: list[tuple[str, str, str]]) -> Any:
        df = evaluate_pairs(pairs, classes=classes, nsd_tolerance_mm=nsd_tolerance_mm)
        csv = write_metrics_csv(df, output_dir / f"metrics_{name}.csv")
        write_sources(build_sources(pairs, classes, images={c: images[c] for c, _, _ in pairs if images[c]} or None),
                      csv.with_suffix(".sources.json"))
        out["metrics"][name] = csv
        return df

    with_clean = [c for c in cases if c.get("clean_path")]
    score("change", [(str(c["case"]), refined_paths[str(c["case"])], c["label_path"]) for c in cases])
    if with_clean:
        before = score("input", [(str(c["case"]), c["label_path"], c["clean_path"]) for c in with_clean])
        after = score("refined", [(str(c["case"]), refined_paths[str(c["case"])], c["clean_path"]) for c in with_clean])
        table = before_after_table(before, after)
        from medrefine.io import atomic_write

        with atomic_write(output_dir / "before_after.csv") as tmp:
            table.to_csv(tmp, index=False)
        out["before_after"] = table
        if report:
            from medrefine.reports import write_report

            out["report"] = write_report(out["metrics"]["refined"], output_dir / "report", title=title,
                                         compare={"input": out["metrics"]["input"]}, name="refined", kept_input=kept)
    elif report:
        from medrefine.reports import write_report

        out["report"] = write_report(out["metrics"]["change"], output_dir / "report",
                                     title=f"{title} (refined vs input; no clean reference)", name="refined",
                                     kept_input=kept, reference_name="input")
    return out


def _guard_table(refined: Sequence[Mapping[str, Any]] | None, output_dir: Path, classes: Mapping[int, str]) -> Any:
    """The guard's decisions of every case (from :func:`refine_cases`' dicts, else ``changes.csv``), or None."""
    import pandas as pd

    if refined:
        if any(r.get("guard") is None for r in refined):
            return None
        table = pd.DataFrame([d for r in refined for d in r["guard"]])
    else:
        csv = output_dir / "changes.csv"
        if not csv.is_file():
            return None
        table = pd.read_csv(csv)
        if "action" not in table.columns:
            return None
        table[["action", "reason", "rule"]] = table[["action", "reason", "rule"]].fillna("")
        table = table[table["action"].isin(["refined", "kept_input", "restored_parts"])].copy()
        table["class_name"] = [str(classes.get(int(c), f"class_{c}")) for c in table["class_id"]]
    if table.empty:
        return None
    return table.reset_index(drop=True)


#: A structure whose refined Dice is below its input Dice by more than this is marked in the table.
WORSE_THAN_INPUT = 0.01


def format_evaluation(evaluation: Mapping[str, Any]) -> str:
    """The before/after Dice table, the guard's fallbacks and the report path of :func:`evaluate_refinement`, as text.

    A structure whose mean refined Dice is below its input Dice by more than 0.01 is marked
    ``< input``; each structure the guard kept the input for gets one line summarised over cases
    (``kept the input for coronary_arteries in 8 of 8 cases (volume < 0.5x input in 8)``).
    """
    from collections import Counter

    lines = []
    table = evaluation.get("before_after")
    if table is not None:
        lines.append(f"{'class':<28} {'input Dice':>10} {'refined Dice':>12} {'change':>8}")
        for _, row in table.iterrows():
            worse = int(row["class_id"]) != -1 and row["delta"] < -WORSE_THAN_INPUT
            lines.append(f"{str(row['class_name']):<28} {row['before']:>10.3f} {row['after']:>12.3f} {row['delta']:>+8.3f}"
                         + ("  < input" if worse else ""))
    else:
        lines.append("no clean reference: scored the refined labels against the input labels only")
    guard = evaluation.get("guard")
    if guard is not None:
        n_cases = guard["case"].nunique()
        kept = guard[guard["action"].isin(["kept_input", "restored_parts"])]
        if kept.empty:
            lines.append(f"guard: the refinement was kept for every structure of the {n_cases} cases")
        for (_, name), group in kept.groupby(["class_id", "class_name"], sort=True):
            whole = group[group["action"] == "kept_input"]
            if not whole.empty:
                rules = Counter(rule for text in whole["rule"] for rule in str(text).split("; ") if rule)
                why = ", ".join(f"{rule} in {count}" for rule, count in rules.most_common())
                lines.append(f"kept the input for {name} in {whole['case'].nunique()} of {n_cases} cases ({why})")
            mended = group[group["action"] == "restored_parts"]
            if not mended.empty:
                lines.append(f"put back dropped parts of {name} in {mended['case'].nunique()} of {n_cases} cases")
    for name, path in evaluation.get("metrics", {}).items():
        lines.append(f"metrics ({name}): {path}")
    if evaluation.get("report") is not None:
        lines.append(f"report: {Path(evaluation['report']).resolve()}")
    return "\n".join(lines)
