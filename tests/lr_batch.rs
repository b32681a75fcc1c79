//! lr-batch-rmt: the batch Gauss-Newton product against the dense `J^T H_out J` built from
//! finite-difference Jacobians, Lanczos on the device Hessian against a dense eigen-solve, the
//! log2 bisection against a known threshold, the claim's checks on the quick profile, and the
//! claim not holding with the mechanism switched off (every batch is the full training set).

use dfdx::prelude::*;
use nalgebra::{DMatrix, SymmetricEigen};
use rand::rngs::StdRng;
use rand::SeedableRng;

use reglab::experiments::lr_batch::{
    gn_product, loss_and_grad, search_max_lr, without_replacement, Data, LrSearch, Net,
};
use reglab::experiments::{find, profile::Profile};
use reglab::headless;
use reglab::metrics::hessian::lanczos;
use reglab::nn::curvature::{fd_hvp, DeviceSpace};
use reglab::nn::transfer::Download;
use reglab::nn::{ParamStore, ParamVec};
use reglab::params::Params;
use reglab::verdict::Outcome;

fn small_net(width: i64, n: i64) -> (Net<Cpu>, Params) {
    let exp = find("lr-batch-rmt").unwrap();
    let mut p = Params::defaults(&exp.params());
    p.set("width", reglab::params::ParamValue::Int(width));
    p.set("n_train", reglab::params::ParamValue::Int(n));
    p.set("warm_steps", reglab::params::ParamValue::Int(20));
    let data = Data::load(n as usize, 3);
    let net = Net::new(&Cpu::default(), &data, &p, 3, "test");
    (net, p)
}

fn flat(v: &ParamVec<f64, Cpu>) -> Vec<f64> {
    ParamStore::<f64, Cpu>::download_vec(v)
}

#[test]
fn the_gauss_newton_product_matches_the_dense_jacobian_form() {
    let (mut net, _) = small_net(3, 40);
    net.store.restore(&net.warm);
    let idx = [1usize, 7, 11, 30];
    let (xb, _) = net.batch(Some(&idx));
    let theta = flat(&net.store.snapshot());
    let p = theta.len();
    let logits =
        |store: &ParamStore<f64, Cpu>| -> Vec<f64> { net.mlp.logits(store, xb.clone()).download() };
    // J (B*C x P) by central differences, one parameter at a time.
    let h = 1e-6;
    let mut store = ParamStore::new(&Cpu::default());
    std::mem::swap(&mut store, &mut net.store);
    let f0 = logits(&store);
    let rows = f0.len();
    let mut jac = DMatrix::<f64>::zeros(rows, p);
    for k in 0..p {
        let mut e = vec![0.0; p];
        e[k] = 1.0;
        let ev = store.upload_vec(&e);
        let base = store.snapshot();
        store.add_scaled(&ev, h);
        let fp = logits(&store);
        store.restore(&base);
        store.add_scaled(&ev, -h);
        let fm = logits(&store);
        store.restore(&base);
        for r in 0..rows {
            jac[(r, k)] = (fp[r] - fm[r]) / (2.0 * h);
        }
    }
    let (b, c) = (idx.len(), rows / idx.len());
    let mut g = DMatrix::<f64>::zeros(p, p);
    for i in 0..b {
        let z = &f0[i * c..(i + 1) * c];
        let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
        let s: f64 = e.iter().sum();
        let pr: Vec<f64> = e.iter().map(|v| v / s).collect();
        let hout = DMatrix::from_fn(c, c, |a, bb| {
            (if a == bb { pr[a] } else { 0.0 }) - pr[a] * pr[bb]
        });
        let ji = jac.rows(i * c, c).into_owned();
        g += ji.transpose() * hout * ji / b as f64;
    }
    let mut rng = StdRng::seed_from_u64(5);
    for _ in 0..3 {
        let v: Vec<f64> = (0..p)
            .map(|_| rand::Rng::gen::<f64>(&mut rng) - 0.5)
            .collect();
        let dense = &g * nalgebra::DVector::from_vec(v.clone());
        let vv = store.upload_vec(&v);
        let got = flat(&gn_product(&net.mlp, &mut store, &xb, &vv, 1e-4));
        let err = got
            .iter()
            .zip(dense.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        let scale = dense.iter().map(|a| a.abs()).fold(0.0, f64::max);
        assert!(err <= 1e-6 * scale.max(1e-3), "{err} vs {scale}");
    }
    // The parameters are put back exactly.
    assert_eq!(flat(&store.snapshot()), theta);
}

#[test]
fn lanczos_on_the_batch_hessian_matches_a_dense_eigen_solve() {
    let (mut net, _) = small_net(2, 30);
    net.store.restore(&net.warm);
    let idx = without_replacement(net.n(), 8, &mut StdRng::seed_from_u64(1));
    let mut sorted = idx.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 8, "drawn without replacement");
    let (xb, yb) = net.batch(Some(&idx));
    let p = net.store.num_trainable();
    let mlp = net.mlp.clone();
    let mut grad = |s: &ParamStore<f64, Cpu>| loss_and_grad(&mlp, s, &xb, &yb).1;
    // Dense Hessian, column by column from the same central-difference HVP.
    let mut hess = DMatrix::<f64>::zeros(p, p);
    for k in 0..p {
        let mut e = vec![0.0; p];
        e[k] = 1.0;
        let ev = net.store.upload_vec(&e);
        let col = flat(&fd_hvp(&mut net.store, &mut grad, &ev, 1e-4));
        for (r, v) in col.iter().enumerate() {
            hess[(r, k)] = *v;
        }
    }
    let sym = (&hess + hess.transpose()) * 0.5;
    let asym = (&hess - hess.transpose()).abs().max();
    let top = SymmetricEigen::new(sym.clone())
        .eigenvalues
        .iter()
        .cloned()
        .fold(f64::NEG_INFINITY, f64::max);
    assert!(asym < 1e-6 * top.abs().max(1.0), "asymmetry {asym}");
    let space = DeviceSpace::of(&net.store);
    let mut rng = StdRng::seed_from_u64(2);
    let store = &mut net.store;
    let mut hvp = |v: &ParamVec<f64, Cpu>| fd_hvp(store, &mut grad, v, 1e-4);
    let s = lanczos(&space, &mut hvp, 60, 1e-10, &mut rng);
    assert!(
        (s.top().value - top).abs() <= 1e-5 * top.abs(),
        "{:?} vs {top}",
        s.top()
    );
}

#[test]
fn the_bisection_finds_a_known_threshold() {
    let s = LrSearch {
        steps: 1,
        check_every: 1,
        start_log2: -10.0,
        cap_log2: 7.0,
        resolution: 0.125,
        batch_seed: 0,
    };
    let f = search_max_lr(&s, &mut |x| x < -1.3);
    assert!(!f.capped && !f.below_range);
    assert!(f.log2_lr < -1.3 && f.log2_lr >= -1.3 - 0.125, "{f:?}");
    // Walk -10, -8, ..., -2, 0 (fails), then four bisections.
    assert_eq!(f.trials.len(), 6 + 4, "{f:?}");
    let capped = search_max_lr(&s, &mut |_| true);
    assert!(capped.capped && capped.log2_lr == 7.0);
    let below = search_max_lr(&s, &mut |_| false);
    assert!(below.below_range && below.log2_lr.is_nan());
}

#[test]
fn the_quick_profile_is_small() {
    let exp = find("lr-batch-rmt").unwrap();
    let q: Profile = exp.quick_profile();
    let p = q.arm_params("curvature", &[]).unwrap();
    assert!(p.usize("n_train") <= 256 && q.seeds.len() == 2);
}

async fn quick(
    extra: &[(&str, &str)],
    arms: Option<&[&str]>,
) -> (reglab::verdict::Verdict, String) {
    let root = tempfile::tempdir().unwrap();
    let (res, text) = headless::run_quick("lr-batch-rmt", arms, extra, root.path())
        .await
        .unwrap();
    // Every run left its artifacts.
    let launch = res.launch_dir.clone();
    for entry in std::fs::read_dir(&launch).unwrap() {
        let d = entry.unwrap().path();
        if d.is_dir() {
            for f in ["params.safetensors", "data.safetensors", "MODEL.txt"] {
                assert!(d.join(f).exists(), "{} has no {f}", d.display());
            }
        }
    }
    (res.verdict, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_quick_profile_the_curvature_law_holds_and_the_exponents_are_measured() {
    let (v, text) = quick(&[], None).await;
    for id in ["1", "2"] {
        assert_eq!(
            v.check(id).unwrap().outcome,
            Outcome::Holds,
            "({id}) {text}"
        );
    }
    // The learning-rate laws are decided (not left inconclusive) from measured exponents.
    for (id, key) in [("3", "sgd_slope"), ("4", "adam_slope")] {
        let c = v.check(id).unwrap();
        assert_ne!(c.outcome, Outcome::Inconclusive, "({id}) {text}");
        let s = c.numbers[key];
        assert!(s.is_finite() && s > 0.0, "({id}) {text}");
    }
    assert!(
        v.check("1").unwrap().numbers["ratio_bmin_over_n"] > 2.0,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_batch_noise_the_claim_does_not_hold() {
    // Every "batch" is the whole training set: no fluctuation matrix, so lambda_max and the
    // largest stable learning rate do not depend on B.
    let (v, text) = quick(
        &[("sampling", "full"), ("trial_steps", "60")],
        Some(&["curvature", "sgd-maxlr"]),
    )
    .await;
    assert_eq!(v.check("1").unwrap().outcome, Outcome::Fails, "{text}");
    assert!(
        v.check("1").unwrap().numbers["ratio_bmin_over_n"] < 1.2,
        "{text}"
    );
    assert_eq!(v.check("3").unwrap().outcome, Outcome::Fails, "{text}");
    assert!(
        v.check("3").unwrap().numbers["sgd_slope"].abs() < 0.2,
        "{text}"
    );
    assert_ne!(v.outcome(), Outcome::Holds, "{text}");
}
