import re

def test_smoke(make_plan):
    plan = make_plan()
    for n in ("a", "b", "c"):
        plan.scene(n, 5)
    proc = plan.run()
    assert proc.returncode == 0
    print(plan.summary())
    print(plan.store_files())
