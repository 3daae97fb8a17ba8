"""Agreement benchmark, in process (the work is CPU-bound library code, so no server): render a
3-page agreement (jinja2 template → reportlab PDF with embedded CJK font, QR on every page), then
each signing step on it — issue (fields + DocMDP certification), party 1, party 2, mediator, seal
— each with a fresh one-time key certified by the platform CA and an RFC 3161 timestamp from the
platform TSA, and finally pyHanko validation of the fully signed document (per signature).

Targets: render ≤ 50 ms, each signature ≤ 400 ms, validation ≤ 20 ms per signature. The
garbage collector is set as ``yuntiao serve`` sets it. ``other_cpu_pct``: CPU used by other
processes meanwhile (% of one core; 200 = both cores busy), which skews every figure.
``--without-speedups`` measures pyHanko's own code paths instead of ``esign.speedups`` (for
comparison).

    .venv/bin/python -m bench.agreement [--rounds 30] [--quiet-wait 60] [--without-speedups]

Progress lines first, then exactly one JSON line of figures, last.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import os
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from PIL import Image, ImageDraw

from bench.common import (
    CpuWindow,
    MachineWindow,
    code_version,
    cpu_reference_ms,
    percentile,
    python_info,
    result,
    rounded,
    say,
    wait_quiet,
)
from config import Settings
from esign import pki, signing, speedups, stamps
from esign.render import SignerSlot, render_agreement
from esign.verify import verify_pdf
from server.cli import GC_GEN0_THRESHOLD

CASE_NO = "（2026）伍联调字第12号"
ITEM = (
    "被申请人于2026年12月31日前向申请人支付货款人民币壹拾贰万元整（¥120,000.00），"
    "以银行转账方式汇入申请人指定账户；逾期未付的，按未付金额每日万分之五支付违约金，"
    "申请人有权就全部未付款项申请强制执行。"
)
TERMS: dict[str, Any] = {
    "facts": "申请人与被申请人于2025年签订买卖合同，约定由申请人供应电池材料。" * 6,
    "dispute": "货款金额、支付期限及违约责任。" * 3,
    "responsibilities": "被申请人未按约付款，应承担主要责任；申请人交货延迟三日，承担次要责任。"
    * 3,
    "items": [ITEM] * 11,
    "performance_manner": "银行转账",
    "performance_place": "湖北省宜昌市伍家岗区",
    "performance_deadline": "2026年12月31日前",
    "copies": 3,
    "extra": "",
}


def fake_case() -> Any:
    parties = [
        SimpleNamespace(id=1, role="applicant", kind="organisation", name="宜昌某电池材料有限公司", id_number_masked="", address="湖北省宜昌市", represents_id=None),
        SimpleNamespace(id=2, role="respondent", kind="person", name="孙某", id_number_masked="3301**********1232", address="浙江省杭州市", represents_id=None),
    ]  # fmt: skip
    return SimpleNamespace(number=CASE_NO, category="contract", parties=parties)


SLOTS = [
    SignerSlot("party-1", "party", "申请人：宜昌某电池材料有限公司"),
    SignerSlot("party-2", "party", "被申请人：孙某"),
    SignerSlot("mediator", "mediator", "人民调解员：李调解"),
    SignerSlot("seal", "seal", "宜昌市伍家岗区联合人民调解委员会（印章）"),
]


def drawing(seed: int) -> Image.Image:
    image = Image.new("RGBA", (300, 120), (0, 0, 0, 0))
    ImageDraw.Draw(image).line(
        [(10, 80), (60 + seed, 20), (150, 90), (280, 30)], fill="black", width=5
    )
    out = io.BytesIO()
    image.save(out, "PNG")
    return signing.signature_image(out.getvalue())


def ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


async def one_round(
    authority: pki.Authority, font: Path, seal: bytes, times: dict[str, list[float]]
) -> int:
    t = time.perf_counter()
    rendered = render_agreement(
        fake_case(), TERMS, SLOTS, document_id="YT-BENCH", verify_url="https://example.org/agreements/verify?id=YT-BENCH",
        mediator="李调解", organisation="宜昌市伍家岗区联合人民调解委员会", font_path=font, route="digital",
    )  # fmt: skip
    times["render_ms"].append(ms(t))
    t = time.perf_counter()
    pdf = await signing.issue(
        rendered.pdf, rendered.places, authority.issue_signer("委员会", CASE_NO, role="签发"), authority.timestamper, name="委员会"
    )  # fmt: skip
    times["sign_issue_ms"].append(ms(t))
    for step, field, who, seed in (
        ("sign_party1_ms", "party-1", "宜昌某电池材料有限公司", 0),
        ("sign_party2_ms", "party-2", "孙某", 20),
        ("sign_mediator_ms", "mediator", "李调解", 40),
    ):
        image = drawing(seed)
        t = time.perf_counter()
        pdf = await signing.sign_field(
            pdf,
            field,
            authority.issue_signer(who, CASE_NO),
            authority.timestamper,
            image=image,
            name=who,
        )
        times[step].append(ms(t))
    t = time.perf_counter()
    pdf = await signing.sign_field(
        pdf, "seal", authority.issue_signer("委员会", CASE_NO, role="印章"), authority.timestamper, seal_pdf=seal, name="委员会", final=True
    )  # fmt: skip
    times["sign_seal_ms"].append(ms(t))
    t = time.perf_counter()
    report = await verify_pdf(pdf, authority.ca_cert_asn1)
    elapsed = ms(t)
    if not report.ok:
        raise RuntimeError(f"validation failed: {report.problem}")
    times["validate_per_signature_ms"].append(elapsed / len(report.signatures))
    times["validate_document_ms"].append(elapsed)
    return rendered.pages


async def main(rounds: int, quiet_wait: float, with_speedups: bool) -> None:
    if not with_speedups:
        speedups.disable()
    font = Settings().document_font_path
    with tempfile.TemporaryDirectory() as tmp:
        authority = pki.load_authority(Settings(data_dir=Path(tmp)))
        seal = stamps.seal_pdf("宜昌市伍家岗区联合人民调解委员会", font)
        keys = ["render_ms", "sign_issue_ms", "sign_party1_ms", "sign_party2_ms", "sign_mediator_ms", "sign_seal_ms", "validate_per_signature_ms", "validate_document_ms"]  # fmt: skip
        times: dict[str, list[float]] = {k: [] for k in keys}
        say("warm-up round (fonts, templates, first imports)")
        pages = await one_round(authority, font, seal, {k: [] for k in keys})
        # As `yuntiao serve` runs: start-up objects frozen, the young generation collected less
        # often. With the defaults, full collections (signing makes many objects) landed in
        # some validations and doubled them.
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)
        busy_before = wait_quiet(quiet_wait)
        reference_before = cpu_reference_ms()
        say(f"{rounds} rounds of a {pages}-page agreement")
        machine, own = MachineWindow(), CpuWindow(os.getpid())
        machine.start()
        own.start()
        for _ in range(rounds):
            await one_round(authority, font, seal, times)
        other = max(0.0, machine.percent() - own.percent())
    figures: dict[str, Any] = {
        "code": code_version(),
        "python": python_info(),
        "rounds": rounds,
        "pages": pages,
        "speedups": speedups.install() if with_speedups else {},
        "other_cpu_pct": rounded(other, 1),
        "machine_busy_before_pct": rounded(busy_before, 1),
        "cpu_reference_before_ms": reference_before,
    }
    for key, values in times.items():
        base = key.removesuffix("_ms")
        figures[f"{base}_p50_ms"] = rounded(percentile(values, 50))
        figures[f"{base}_p95_ms"] = rounded(percentile(values, 95))
    sign_keys = [k for k in keys if k.startswith("sign_")]
    figures["target_render_le_50ms_met"] = figures["render_p95_ms"] <= 50
    figures["target_each_signature_le_400ms_met"] = all(
        figures[f"{k.removesuffix('_ms')}_p95_ms"] <= 400 for k in sign_keys
    )
    figures["target_validation_le_20ms_per_signature_met"] = (
        figures["validate_per_signature_p95_ms"] <= 20
    )
    result(figures)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="wait up to this many seconds for the machine to be idle first",
    )
    parser.add_argument(
        "--without-speedups",
        action="store_true",
        help="pyHanko's own code paths, not esign.speedups (for comparison)",
    )
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.quiet_wait, not args.without_speedups))
