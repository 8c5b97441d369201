"""The batch lane at size: a 50,000-line OpenAI batch file through `thrifty serve` -> `thrifty emulate`.

Prints and writes (JSON) what the issue asks for:
  - submit: wall time of `files.create` + `batches.create` (upload, every line validated and
    planned through the levers, the job stored) - the client's wait;
  - first provider submission: how long until the lane has sent the lines to the provider;
  - rows/s: ledger rows written per second once the provider's batch ended (results read,
    translated, priced at the batch price, recorded, job ended);
  - peak memory: the gateway process's peak resident set (VmHWM), before and after.

Usage: python bench/batch_lane.py [--lines 50000] [--json FILE (default bench/results/batch_lane.json)]
Needs nothing but this checkout: both servers run as child processes on loopback.
"""

from __future__ import annotations

import argparse
import io
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from thrifty.cli import localstack, processes  # noqa: E402


def vm_hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=50_000, help="lines in the batch file (default 50,000)")
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "batch_lane.json"), help="where to write the figures")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="thrifty-bench-batch-"))
    (tmp / "emulator.yaml").write_text("batch_seconds: 1.0\n")
    emu = processes.start_emulator(latency_scale=0.0, log_path=str(tmp / "emulator.log"),
                                   extra=["--config", str(tmp / "emulator.yaml")])
    ledger = tmp / "ledger.db"
    cfg = localstack.local_config(emu.url, f"sqlite:///{ledger}", timeout_s=600)
    cfg["batch"] = {"tick_s": 0.2, "poll_min_s": 0.5, "poll_max_s": 1.0}
    cfg["server"]["max_body_bytes"] = 256 * 1024 * 1024
    path = localstack.write_config(str(tmp / "thrifty.yaml"), cfg)
    gw = processes.start_gateway(path, log_path=str(tmp / "gateway.log"))
    try:
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key=localstack.DEMO_KEY, timeout=1200, max_retries=0)
        lines = [json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                             "body": {"model": "gpt-4o-mini", "max_tokens": 16, "messages": [
                                 {"role": "system", "content": "Tag the product with one category."},
                                 {"role": "user", "content": f"product #{i}: a blue ceramic mug, 350 ml"}]}})
                 for i in range(args.lines)]
        data = ("\n".join(lines) + "\n").encode()
        hwm0 = vm_hwm_kib(gw.proc.pid)
        t0 = time.perf_counter()
        f = client.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")
        t_upload = time.perf_counter() - t0
        b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
        t_submit = time.perf_counter() - t0
        print(f"submit: upload {t_upload:.2f} s, upload + create {t_submit:.2f} s for {args.lines} lines "
              f"({len(data) / 1e6:.1f} MB)", flush=True)

        def emulator_has_it() -> bool:
            with openai.OpenAI(base_url=emu.url + "/v1", api_key="emulator-key") as e:
                return bool(e.batches.list(limit=1).data)

        while not emulator_has_it():
            time.sleep(0.2)
        t_sent = time.perf_counter() - t0
        print(f"sent to the provider after {t_sent:.2f} s", flush=True)
        ended_at = None
        while True:
            j = client.batches.retrieve(b.id)
            if j.status in ("completed", "failed", "expired", "cancelled"):
                break
            time.sleep(0.5)
        t_done = time.perf_counter() - t0
        # The provider's batch ended batch_seconds after it was created; rows/s from then on.
        provider_end = t_sent + 1.0
        con = sqlite3.connect(ledger)
        (rows,) = con.execute("SELECT COUNT(*) FROM calls WHERE lane = 'batch'").fetchone()
        con.close()
        hwm1 = vm_hwm_kib(gw.proc.pid)
        out = {
            "lines": args.lines, "file_mb": round(len(data) / 1e6, 2),
            "submit_wall_s": round(t_submit, 3), "upload_s": round(t_upload, 3),
            "sent_to_provider_s": round(t_sent, 3), "done_s": round(t_done, 3),
            "ledger_rows": rows, "completed": j.request_counts.completed,
            "rows_per_s": round(rows / max(1e-9, t_done - provider_end), 1),
            "gateway_peak_rss_mib_before": round(hwm0 / 1024, 1), "gateway_peak_rss_mib": round(hwm1 / 1024, 1),
        }
        ended_at = out
        print(json.dumps(out, indent=2))
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(ended_at, indent=2) + "\n")
    finally:
        gw.stop()
        emu.stop()


if __name__ == "__main__":
    main()
