from deploy_helpers import aws_account, deploy_now  # noqa: F401


def test_smoke(aws_account):
    first = deploy_now(aws_account, plan_only=True)
    print("\n".join(first.plan.lines()))
    applied = deploy_now(aws_account)
    print(applied.applied)
    again = deploy_now(aws_account, plan_only=True)
    print("\n".join(again.plan.lines()))
    assert again.plan.empty
