//! MSBReg: the quick profile measures collapse and decides the claim's checks, and with the
//! regularizer switched off (lambda_b = lambda_s = 0) the regularized control trains exactly as
//! the plain one, so check 2 fails.

use reglab::headless;
use reglab::verdict::Outcome;

async fn quick_launch(
    extra: &[(&str, &str)],
    arms: Option<&[&str]>,
) -> (reglab::verdict::Verdict, String) {
    let root = tempfile::tempdir().unwrap();
    let (res, text) = headless::run_quick("msbreg", arms, extra, root.path())
        .await
        .unwrap();
    (res.verdict, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_quick_profile_the_plain_control_collapses_and_the_checks_are_decided() {
    let (v, text) = quick_launch(&[], None).await;
    let c2 = v.check("2").unwrap();
    // The collapse-prone control does collapse (so check 2 is decided, either way).
    assert!(c2.numbers["control.emb_std"] < 0.1 / 8.0, "{text}");
    assert_ne!(c2.outcome, Outcome::Inconclusive, "{text}");
    for id in ["1", "3"] {
        assert_ne!(
            v.check(id).unwrap().outcome,
            Outcome::Inconclusive,
            "({id}) {text}"
        );
    }
    // The regularizer spreads the embeddings more than the plain loss does.
    assert!(
        c2.numbers["control_msb.eff_rank"] > c2.numbers["control.eff_rank"],
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_regularizer_check_two_fails() {
    let (v, text) = quick_launch(
        &[("lambda_b", "0"), ("lambda_s", "0")],
        Some(&["no-ema-no-pred", "no-ema-msb"]),
    )
    .await;
    // no-ema-msb at lambda 0 trains exactly as the control: it collapses too.
    let c2 = v.check("2").unwrap();
    assert_eq!(c2.outcome, Outcome::Fails, "{text}");
    assert_eq!(
        c2.numbers["control.emb_std"], c2.numbers["control_msb.emb_std"],
        "{text}"
    );
}
