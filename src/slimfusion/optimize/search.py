"""The budgeted search: probe each model variant's speed, screen candidates fastest-first on few samples, recheck
the survivors on more, and confirm the fastest on fresh noise; every finished measurement goes to a journal, so a
killed search resumes where it stopped.

Hand-written (no tuning library does this): the candidates are few hundred, each costs seconds to minutes, speed is
measured rather than predicted, and the statistics must not be gamed by the search itself. The screen's order comes
from a probe (a variant's forward time x evaluations x a plan's kept MACs) and only orders; every figure reported is
a measurement. The last verdict is taken on seeds the search never saw (`seed` + 1).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable

from slimfusion.metrics.cost import interleaved_latency
from slimfusion.optimize.config import OptimizeConfig
from slimfusion.optimize.journal import Journal
from slimfusion.optimize.measure import Arena, likely_to_hold
from slimfusion.optimize.space import (
    Candidate,
    candidates,
    core,
    key_of,
    label_of,
    model_key,
    model_part,
    required_parts,
    same_but_fewer_steps,
    sampled_with,
    trainings,
)
from slimfusion.progress import console
from slimfusion.registry import LEVERS

QUALITY_RUNGS = ("screen", "mid", "confirm")  # the rungs that judge images (a probe times a model)
SLOW_PART = 0.25  # a model lever this much slower than the original alone is not probed in compositions


class Search:
    """One search over the candidates of `config` on `arena`'s model, within `config.budget` seconds."""

    def __init__(self, arena: Arena, config: OptimizeConfig, journal: Journal, log: Callable[[str], None] = None,
                 started: float | None = None):  # fmt: skip
        """`started`: when the search's clock started (perf_counter; default now), plus the journal's time."""
        self.arena, self.config, self.journal = arena, config, journal
        self.log = log or (lambda line: console.print(line, highlight=False, soft_wrap=True))
        began = time.perf_counter() if started is None else started
        self.started = began - sum(r.get("elapsed", 0.0) for r in journal.rows.values())
        self.pool, self.refused = candidates(config, arena.builder.original)
        self.notes: dict[str, str] = {}  # key -> why it was not measured further
        self.shares: dict[tuple, float] = {}
        self.pool_keys = {key_of(c) for c in self.pool}
        self.speed: dict[str, float] = {}  # the probe's forward speedup per model variant

    # -- bookkeeping ------------------------------------------------------------------------------------------------
    def spent(self) -> float:
        return time.perf_counter() - self.started

    def left(self) -> float:
        return self.config.budget - self.spent()

    def measured(self, candidate: Candidate, rung: str, work: Callable[[], dict]) -> dict:
        """The candidate's row at `rung`: from the journal, else from a candidate with the same images (the same
        lossy core: exact levers change only speed) measured there, else measured by `work`."""
        key = key_of(candidate)
        row = self.journal.get(key, rung)
        if row is None and rung in QUALITY_RUNGS:
            row = self.same_images(candidate, rung)
        if row is None:
            began = time.perf_counter()
            row = work()
            row = self.journal.put(key, rung, row | {"elapsed": time.perf_counter() - began})
        return row

    def same_images(self, candidate: Candidate, rung: str) -> dict | None:
        """The row at `rung` of a measured candidate whose images are this one's (same lossy core, other exact
        levers), its quality shared and its seconds per batch scaled by the two forward probes (for ordering; a
        confirmed candidate is timed for itself). None when there is none."""
        mine = key_of(core(candidate))
        for (key, at), row in list(self.journal.rows.items()):
            other = json.loads(key)
            if at != rung or key == key_of(candidate) or key_of(core(other)) != mine or "inherited" in row:
                continue
            scale = self.speed.get(model_key(other), 1.0) / max(self.speed.get(model_key(candidate), 1.0), 1e-9)
            shared = {k: v for k, v in row.items() if k not in ("key", "rung", "elapsed")}
            shared |= {"seconds_per_batch": row["seconds_per_batch"] * scale, "inherited": key}
            return self.journal.put(key_of(candidate), rung, shared | {"elapsed": 0.0})
        return None

    def likely(self, row: dict) -> bool:
        return likely_to_hold(row, self.config)

    def promotion_order(self, rows: list[dict]) -> list[dict]:
        """Those likely to hold on the confirmation's samples first, each group fastest first."""
        return sorted(rows, key=lambda r: (not self.likely(r), r["seconds_per_batch"]))

    # -- the phases -------------------------------------------------------------------------------------------------
    def probe(self) -> dict[str, float]:
        """Forward speedup over the original of every model variant at `batch` (compiles a compiled one once)."""
        variants = {model_key(c): model_part(c) for c in self.pool}
        speed = {}
        for key, model_only in sorted(variants.items(), key=lambda item: (trainings(item[1]), len(item[1]))):
            if not model_only:
                speed[key] = 1.0
                continue
            slow = [
                n for n in model_only if len(model_only) > 1 and speed.get(model_key({n: model_only[n]}), 1) < SLOW_PART
            ]
            if slow and self.journal.get(key_of(model_only), "probe") is None:
                speed[key] = 0.0  # not built: its candidates are not screened
                self.log(f"probe  {label_of(model_only):<40} not probed: {slow[0]} alone runs under {SLOW_PART}x")
                continue
            guess = self.training_guess(model_only)
            if self.journal.get(key_of(model_only), "probe") is None and guess and guess > self.left() / 2:
                speed[key] = 0.0  # not built: its candidates are not screened
                self.log(f"probe  {label_of(model_only):<40} not trained: its parts took {guess:.0f} s")
                continue

            def work(model_only=model_only):
                _, model = self.arena.builder.models_of(model_only)
                times = interleaved_latency({"original": self.arena.builder.original, "variant": model},
                                            self.config.batch, repeats=3)  # fmt: skip
                return {"forward_speedup": times["original"] / times["variant"]}

            row = self.measured(model_only, "probe", work)
            speed[key] = row["forward_speedup"]
            self.log(f"probe  {label_of(model_only):<40} forward {row['forward_speedup']:.2f}x the original's speed")
        return speed

    def training_guess(self, model_only: Candidate) -> float:
        """Seconds the probes of a composition's trained parts took (0 for one training lever or none): two
        trainings cost about their sum, and one that cannot finish in the budget is not started."""
        trained = [n for n in model_only if LEVERS[n].trains]
        if len(trained) < 2:
            return 0.0
        rows = [self.journal.get(key_of({n: model_only[n]}), "probe") for n in trained]
        return sum(r.get("elapsed", 0.0) for r in rows if r is not None)

    def predicted(self, candidate: Candidate, speed: dict[str, float]) -> float:
        """Relative cost for ordering only: evaluations x forward time x the plan's kept MACs."""
        sampling = sampled_with(candidate, self.config)
        kept = 1.0
        if any(LEVERS[n].kind == "plan" for n in candidate):
            kept = self.plan_share(candidate)
        forward = speed[model_key(candidate)]
        return sampling["steps"] * kept / forward if forward > 0 else float("inf")

    def plan_share(self, candidate: Candidate) -> float:
        """The kept MACs of the candidate's plan, made once per model variant, plan setting and step count (or as its
        lever declares it)."""
        plans = {n: k for n, k in candidate.items() if LEVERS[n].kind == "plan"}
        declared = [LEVERS[n].share(k) for n, k in plans.items() if LEVERS[n].share is not None]
        if declared:  # known before the plan is made (a fitted plan is made only when screened)
            return min(declared)
        memo = (model_key(candidate), key_of(plans), sampled_with(candidate, self.config)["steps"])
        if memo not in self.shares:
            self.shares[memo] = self.arena.builder.build(candidate)[1].plan.macs_ratio
        return self.shares[memo]

    def screen(self, order: list[Candidate], speed: dict[str, float]) -> list[dict]:
        """Candidates on `screen_num` samples, single levers first and then compositions (each size fastest-predicted
        first, a candidate that needs a part screened first right after that part; exact levers ride along with the
        setting they speed up, before any lossy addition), until the budget's screening share is spent. A
        composition is screened only when every part of it (one lever fewer; with exact levers: its lossy core)
        held: adding a lossy lever to a failing setting cannot make it hold, and the expensive compositions (compile
        under a cache's hooks) are measured only when they can win. A setting is skipped once the same levers held
        with a smaller cost knob (fewer evaluations): it can only be slower; so is one the probe predicts no faster
        than the original, or costlier to screen than the screening budget left."""
        passed: list[dict] = []
        held: set[str] = set()
        pool = {key_of(c) for c in order}
        queue, decided, count = list(order), set(), 0
        while queue:
            candidate = queue.pop(0)
            key = key_of(candidate)
            pending = [p for p in required_parts(candidate) if key_of(p) in pool and key_of(p) not in decided]
            if pending:  # predicted faster than a part it needs: screened right after that part
                after = max(i for i, c in enumerate(queue) if key_of(c) in {key_of(p) for p in pending})
                queue.insert(after + 1, candidate)
                continue
            decided.add(key)
            count += 1
            # until one candidate held, the reserve is a guess: screen on while any budget is left
            reserve = self.reserve("screen", passed) if passed else 0.0
            if self.journal.get(key, "screen") is None and self.left() < reserve:
                for rest in [candidate, *queue]:
                    self.notes.setdefault(key_of(rest), "not screened: budget")
                break
            if speed[model_key(candidate)] == 0:
                self.notes[key] = "not screened: its model was not built (see its probe line)"
                continue
            share = self.predicted(candidate, speed) / self.config.base_steps  # of the original's time
            if share >= 1:
                self.notes[key] = f"not screened: the probe predicts {1 / share:.2f}x the original's speed"
                continue
            cost = share * self.original_batch() * -(-self.config.screen_num // self.config.batch)
            if self.journal.get(key, "screen") is None and cost > self.left() - reserve:
                self.notes[key] = f"not screened: ~{cost:.0f} s predicted, more than the budget left for screening"
                continue
            # only a setting likely to hold on the confirmation's samples makes its slower siblings pointless
            faster = next((p for p in passed if self.likely(p) and same_but_fewer_steps(p["candidate"], candidate)),
                          None)  # fmt: skip
            if faster is not None:
                self.notes[key] = f"not screened: {label_of(faster['candidate'])} held with fewer evaluations"
                held.add(key)
                continue
            failed = [p for p in required_parts(candidate) if key_of(p) in pool and key_of(p) not in held]
            if failed:
                self.notes[key] = f"not screened: its part {label_of(failed[0])} did not hold"
                continue
            row = self.measured(
                candidate, "screen", lambda c=candidate: self.arena.judge(c, self.config.seed, self.config.screen_num)
            )
            self.report(candidate, "screen", row, count, len(order))
            if row["holds"]:
                passed.append({"candidate": candidate, **row})
                held.add(key)
        return self.promotion_order(passed)

    def recheck(self, passed: list[dict], reserve: float) -> list[dict]:
        """The screen's survivors, fastest first, on `mid_num` samples of the same seed (0: skipped), until
        2 x `confirm` hold or the budget keeps the rest back for the confirmation (then they follow the rechecked).
        One that fails is replaced by its next setting (one step more of its cost knob), screened and rechecked in
        turn: the screen skipped that setting because this one held on fewer samples."""
        if not self.config.mid_num:
            return passed
        queue, kept, unchecked = list(passed), [], []
        while queue and len(kept) < 2 * self.config.confirm:
            row = queue.pop(0)
            candidate = row["candidate"]
            key = key_of(candidate)
            if self.journal.get(key, "mid") is None and self.left() < reserve:
                self.notes.setdefault(key, "not rechecked: budget (confirmed directly when a slot was left)")
                unchecked.append(row)
                continue
            mid = self.measured(
                candidate, "mid", lambda c=candidate: self.arena.judge(c, self.config.seed, self.config.mid_num)
            )
            self.report(candidate, "mid", mid)
            if mid["holds"]:
                kept.append({"candidate": candidate, **mid})
                continue
            following = self.climbed(candidate) if self.left() >= reserve else None
            if following is not None:
                queue = self.promotion_order([*queue, following])
        # the rechecked that stay likely first, then what the budget left unchecked, then those the recheck found
        # unlikely to hold: all still reach the fresh-noise confirmation, which alone decides
        likely = [r for r in kept if self.likely(r)]
        doubtful = [r for r in kept if not self.likely(r)]
        return self.promotion_order(likely) + self.promotion_order(unchecked) + self.promotion_order(doubtful)

    def climbed(self, candidate: Candidate) -> dict | None:
        """The screen row of the candidate's next setting (one step more of its cost knob) when it holds there, for
        a candidate that failed a later rung: the screen skipped that setting because this one held on fewer
        samples, so it is screened now. None when there is no next setting or it fails the screen."""
        following = self.next_setting(candidate)
        if following is None:
            return None
        self.notes.pop(key_of(following), None)
        row = self.measured(following, "screen", lambda c=following: self.arena.judge(
            c, self.config.seed, self.config.screen_num))  # fmt: skip
        self.report(following, "screen", row)
        return {"candidate": following, **row} if row["holds"] else None

    def next_setting(self, candidate: Candidate) -> Candidate | None:
        """The candidate with the next larger value of one lever's cost knob (in the searched pool), if any."""
        for name, knobs in candidate.items():
            knob = LEVERS[name].cost_knob
            if knob is None:
                continue
            larger = sorted(v for v in self.config.knob_values(name, knob) if v > knobs[knob])
            for value in larger:
                following = candidate | {name: knobs | {knob: value}}
                if key_of(following) in self.pool_keys:
                    return following
        return None

    def confirm(self, survivors: list[dict]) -> tuple[list[dict], dict | None]:
        """The fastest `confirm` survivors' settings on `confirm_num` fresh samples (exact variants share their
        setting's verdict), each one that fails followed by its next setting (up to `confirm` such climbs); those that
        hold are timed in alternation with the original in one run, and the fastest is the choice. A confirmation
        starts only while budget is left (the best confirmed so far stands)."""
        fresh, confirmed, climbs, settings, failed = self.config.seed + 1, [], 0, set(), set()
        queue = list(survivors)
        while queue:
            candidate = queue.pop(0)["candidate"]
            key, images = key_of(candidate), key_of(core(candidate))
            # a slot per setting (its exact variants ride along free); one that failed is not tried again
            if images in failed or (images not in settings and len(settings) >= self.config.confirm + climbs):
                continue
            settings.add(images)
            if self.journal.get(key, "confirm") is None and self.left() <= 0:
                self.notes.setdefault(key, "not confirmed: budget")
                continue
            final = self.measured(
                candidate, "confirm", lambda c=candidate: self.arena.judge(c, fresh, self.config.confirm_num)
            )
            confirmed.append({"candidate": candidate, **final})
            self.report(candidate, "confirm", final)
            if not final["holds"]:
                failed.add(images)
            if final["holds"] or climbs >= self.config.confirm or self.left() <= 0:
                continue
            # a failure is followed by its next setting (one step more) while that can still beat a held one
            best = min((c["seconds_per_batch"] for c in confirmed if c["holds"]), default=float("inf"))
            following = self.climbed(candidate)
            if following is not None and following["seconds_per_batch"] < best:
                queue.insert(0, following)
                climbs += 1
        holding = [c for c in confirmed if c["holds"]]
        untimed = [c for c in holding if self.journal.get(key_of(c["candidate"]), "speed") is None]
        if untimed:
            began = time.perf_counter()
            rows = self.arena.speeds([c["candidate"] for c in untimed], fresh)
            share = (time.perf_counter() - began) / len(untimed)
            for c, speed in zip(untimed, rows, strict=True):
                self.journal.put(key_of(c["candidate"]), "speed", speed | {"elapsed": share})
        for c in holding:
            c["speed"] = self.journal.get(key_of(c["candidate"]), "speed")
            self.report(c["candidate"], "timed", c)
        chosen = max(holding, key=lambda c: c["speed"]["speedup"], default=None)
        return confirmed, chosen

    def run(self) -> dict:
        """The whole search: {"chosen", "confirmed", "rows", "refused", "notes", "seconds"}."""
        self.log(f"{len(self.pool)} candidates from levers {', '.join(self.config.lever_names())}; "
                 f"budget {self.config.budget:.0f} s, quality rule {self.config.quality.text()}")  # fmt: skip
        self.arena.original(self.config.seed, self.config.screen_num)
        speed = self.speed = self.probe()
        # by the size of the lossy core (exact levers ride along), each size fastest-predicted first
        order = sorted(self.pool, key=lambda c: (max(len(core(c)), 1), self.predicted(c, speed)))
        passed = self.screen(order, speed)
        survivors = self.recheck(passed, self.reserve("mid", passed))
        confirmed, chosen = self.confirm(survivors)
        return {
            "chosen": chosen,
            "confirmed": confirmed,
            "rows": list(self.journal.rows.values()),
            "refused": self.refused,
            "notes": self.notes,
            "seconds": self.spent(),
            "original_seconds_per_batch": self.original_batch(),
        }

    def original_batch(self) -> float:
        seconds = self.arena.original_batch_seconds
        return sorted(seconds)[len(seconds) // 2] if seconds else float("nan")

    def reserve(self, rung: str, passed: list[dict] | None = None) -> float:
        """Seconds kept back for the rungs after `rung` ("screen": `confirm` rechecks and confirmations; "mid":
        `confirm` confirmations): the original's images there, the timing rounds, and the candidates' images at the
        cost measured on the candidates that held so far (their median batch time; a quarter of the original's
        before any held), from the original's median batch."""
        seconds = self.arena.original_batch_seconds
        if not seconds:  # every original image came from the cache of a resumed search
            return 0.0
        # the original's median batch (a 15-minute run's 2,000 fresh images took 31 of them: features and bootstraps
        # add little; an extra fifth held back cost the screen ~60 s)
        batch, c = statistics.median(seconds), self.config
        share = 0.25 if not passed else min(1.0, statistics.median(p["seconds_per_batch"] for p in passed) / batch)
        per_image = batch / c.batch
        # the original's fresh images (sampled once) and `confirm` candidates', one timing run (warm-up + rounds); a
        # failed one's next setting is confirmed with what is left
        confirm = per_image * c.confirm_num * (1 + c.confirm * share) + (c.rounds + 1) * batch * (1 + share)
        if rung == "mid" or not c.mid_num:
            return confirm
        return confirm + per_image * (c.mid_num - c.screen_num + c.confirm * c.mid_num * share)

    def report(self, candidate: Candidate, rung: str, row: dict, index: int | None = None, total: int | None = None):
        where, fd = f"[{index}/{total}] " if index else "", row["differences"].get("fd")
        quality = f"FD {fd['difference']:+.3f} [{fd['interval'][0]:+.3f}, {fd['interval'][1]:+.3f}]" if fd else ""
        speed = f"{row['speed']['speedup']:.2f}x" if "speed" in row else f"{row['seconds_per_batch']:.2f} s/batch"
        verdict = "holds" if row["holds"] else f"fails: {row['why']}"
        if row["holds"] and rung != "confirm" and not self.likely(row):
            verdict += f" (unlikely to hold on {self.config.confirm_num})"
        if "inherited" in row:
            verdict += f" (the images of {label_of(json.loads(row['inherited']))})"
        self.log(f"{rung:<8}{where}{label_of(candidate):<40} n={row['num']:<5} {speed:>12}  {quality}  {verdict}"
                 f"  ({self.spent():.0f} s of {self.config.budget:.0f})")  # fmt: skip
