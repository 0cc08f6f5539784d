import signal, time, boto3, subprocess
from conftest import processes_matching, wait_for

def test_s3(make_plan, s3_env):
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="bkt")
    plan = make_plan(store="s3://bkt/pre")
    plan.scene("s3a", 5)
    t = time.monotonic()
    proc = plan.run("--retries", "0", env=s3_env)
    print("took", time.monotonic() - t)
    objs = boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket="bkt").get("Contents", [])
    print([o["Key"] for o in objs])
    body = boto3.client("s3").get_object(Bucket="bkt", Key="pre/"+plan.plan["summary_key"])["Body"].read()
    print(body.decode()[:3000])

def test_term_hang(make_plan):
    plan = make_plan()
    plan.scene("hangx1", 5, {"hang": True})
    p = plan.start()
    t0=time.monotonic(); found = wait_for(lambda: processes_matching("hangx1.json"), 30); print("found", found, time.monotonic()-t0); print(subprocess.run(["ps","-eo","pid,args"],capture_output=True,text=True).stdout[-3000:])
    print(processes_matching("hangx1.json"))
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    print(p.returncode, out, err[-3000:])
    time.sleep(2)
    print("after", processes_matching("hangx1.json"))
    print(plan.summary()["state"])

def test_term_early(make_plan):
    plan = make_plan()
    plan.scene("early", 5)
    p = plan.start()
    line = p.stdout.readline()
    print("line", line)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    print(p.returncode, out, err[-3000:])
    print(plan.summary()["state"])
