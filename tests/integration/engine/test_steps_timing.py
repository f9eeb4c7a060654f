"""T3/T4 through the engine on both stores: the first step at enrollment, the next one day later at
`default_send_time`."""

from tests.integration.engine.conftest import RunSim

WS = """\
workspace: {id: shop, name: Shop, timezone: UTC, default_send_time: "10:00", physical_address: "1 Main St"}
mailboxes:
  - {id: ann, from: "Ann <ann@shop.test>", default: true}
templates:
  hello: {subject: "Hello", text: "Hi"}
sequences:
  - id: welcome
    steps:
      - {id: one, type: email, template: hello}
      - {id: two, type: email, template: hello, after: {days: 1}}
"""


def test_t3_t4_first_step_at_once_next_after_a_day_at_default_send_time(run_sim: RunSim) -> None:
    log = run_sim(
        WS,
        [
            {
                "at": "2026-01-05T08:00:00Z",
                "type": "admin.enroll",
                "contact": "a@x.test",
                "sequence": "welcome",
            }
        ],
        "2026-01-10T00:00:00Z",
    )
    assert [(r["at"], r["step"]) for r in log.sent()] == [
        ("2026-01-05T08:00:00Z", "one"),
        ("2026-01-06T10:00:00Z", "two"),
    ]
    assert log.enrollment("a@x.test", "welcome")["status"] == "finished"
