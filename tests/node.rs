//! Neural ODEs: gradients back-propagated through the solver's steps against finite differences
//! of the same discretization, and the locally regularized ODE paper's finding at small scale.

use dfdx::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

use reglab::engine::LaunchRequest;
use reglab::experiments::node::{step_taped, Dynamics};
use reglab::headless;
use reglab::ode::{self, Step, Tolerances};
use reglab::params::Override;
use reglab::verdict::Outcome;

const TOL: Tolerances = Tolerances {
    atol: 1e-6,
    rtol: 1e-6,
};

/// Host replay of a fixed step schedule: the final state and the sum over steps of
/// `|h| * scaled error norm` (scales held fixed).
fn host_replay(net: &Dynamics, y0: &[f64], steps: &[Step], scales: &[Vec<f64>]) -> (Vec<f64>, f64) {
    let dev = Cpu::default();
    let p = net.tensors(&dev);
    let mut f = |t: f64, y: &Vec<f64>| net.eval(&p, &dev, t, y);
    let mut y = y0.to_vec();
    let mut reg = 0.0;
    for (st, scale) in steps.iter().zip(scales) {
        let k1 = f(st.t, &y);
        let (y5, err, _) = ode::dp5_step(&mut f, st.t, &y, &k1, st.h);
        let n = err.len() as f64;
        reg += st.h.abs()
            * (err
                .iter()
                .zip(scale)
                .map(|(e, s)| (e / s).powi(2))
                .sum::<f64>()
                / n)
                .sqrt();
        y = y5;
    }
    (y, reg)
}

#[test]
fn gradients_through_the_solver_match_finite_differences() {
    let mut rng = StdRng::seed_from_u64(4);
    let net = Dynamics::new(2, 5, 1.0, &mut rng);
    let y0 = vec![0.5, -0.3, 1.0, 0.2, -0.7, 0.9]; // a batch of three states
    let dev = Cpu::default();
    let p = net.tensors(&dev);
    let mut f = |t: f64, y: &Vec<f64>| net.eval(&p, &dev, t, y);
    let sol = ode::solve(&mut f, 0.0, &y0, &[1.5], TOL, 10_000).unwrap();
    assert!(sol.steps.len() >= 2, "{:?}", sol.stats);
    // Tolerance scales of every step, from the unperturbed trajectory, held constant.
    let mut scales = Vec::new();
    let mut y = y0.clone();
    for st in &sol.steps {
        let k1 = f(st.t, &y);
        let (y5, _, _) = ode::dp5_step(&mut f, st.t, &y, &k1, st.h);
        scales.push(
            y.iter()
                .zip(&y5)
                .map(|(a, b)| TOL.atol + TOL.rtol * a.abs().max(b.abs()))
                .collect::<Vec<f64>>(),
        );
        y = y5;
    }
    // Loss = sum of squares of the final state + the global regularizer, on the tape.
    let taped = |net: &Dynamics| {
        let p = net.tensors(&dev);
        let mut y = dev
            .tensor_from_vec(y0.clone(), (3usize, 2usize))
            .retaped::<OwnedTape<f64, Cpu>>();
        let mut reg: Option<Tensor<(), f64, Cpu, OwnedTape<f64, Cpu>>> = None;
        for (st, scale) in sol.steps.iter().zip(&scales) {
            let scale = dev.tensor_from_vec(scale.clone(), (3usize, 2usize));
            let (next, e) = step_taped(net, &p, y, *st, Some(&scale));
            let term = e.unwrap() * st.h.abs();
            reg = Some(match reg {
                None => term,
                Some(r) => r + term,
            });
            y = next;
        }
        let loss = y.square().sum::<Rank0, _>() + reg.unwrap();
        let value = loss.array();
        let g = loss.backward();
        (value, Dynamics::grads(&p, &g))
    };
    let (value, grads) = taped(&net);
    let host_loss = |net: &Dynamics| {
        let (y, reg) = host_replay(net, &y0, &sol.steps, &scales);
        y.iter().map(|v| v * v).sum::<f64>() + reg
    };
    assert!(
        (value - host_loss(&net)).abs() < 1e-9,
        "taped and host replays differ"
    );
    let h = 1e-6;
    let mut checked = 0;
    for (k, g) in grads.iter().enumerate() {
        for i in (0..g.len()).step_by(3) {
            let mut plus = net.clone();
            plus.params_mut()[k][i] += h;
            let mut minus = net.clone();
            minus.params_mut()[k][i] -= h;
            let fd = (host_loss(&plus) - host_loss(&minus)) / (2.0 * h);
            assert!(
                (fd - g[i]).abs() <= 1e-5 * (1.0 + g[i].abs()),
                "parameter group {k}[{i}]: finite difference {fd} vs back-propagated {}",
                g[i]
            );
            checked += 1;
        }
    }
    assert!(checked >= 10);
}

/// At this toy scale (200 steps, an 8-dimensional state over [0, 1]) the unregularized model
/// already needs barely more evaluations than the solver spends on f = 0 (its `nfe_floor`), so
/// the authors' fresh-step local regularizer cannot reach 0.75x: check (i) fails, and the run
/// says so. The accepted-step ablation, whose penalty pushes the dynamics towards zero until the
/// initial-step choice covers the interval in one step, does cut the test NFE below that count
/// at similar accuracy (check ia).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_regularization_at_toy_scale() {
    let root = tempfile::tempdir().unwrap();
    let profile = reglab::experiments::find("local-reg-node")
        .unwrap()
        .quick_profile();
    let p = profile.preset().unwrap();
    let req = LaunchRequest::from(&profile);
    let (res, text) = headless::run_captured(&p, &req, root.path(), 2)
        .await
        .unwrap();
    let c = res.verdict.check("i").unwrap();
    assert_eq!(c.outcome, Outcome::Fails, "{text}");
    let ratio = c.numbers["digits-local.s1.nfe_ratio"];
    let floor = c.numbers["digits-local.s1.nfe_floor"];
    assert!(ratio > 0.75, "{ratio}\n{text}");
    assert!(floor > 0.0 && floor <= 50.0, "{floor}\n{text}");
    let a = res.verdict.check("ia").unwrap();
    assert!(a.informational);
    assert_eq!(a.outcome, Outcome::Holds, "{text}");
    let ratio = a.numbers["digits-local-accepted.s1.nfe_ratio"];
    assert!(ratio <= 0.75, "{ratio}\n{text}");
    let (acc, base, bar) = (
        a.numbers["digits-local-accepted.s1.score"],
        a.numbers["digits-local-accepted.s1.base_score"],
        a.numbers["digits-local-accepted.s1.acc_bar"],
    );
    assert!(bar > 0.0 && bar < 0.1, "{bar}");
    assert!(acc >= base - bar && base > 0.85, "{acc} vs {base}\n{text}");
    // Each run keeps the test digits it got wrong as a picture (captions "predicted (true)").
    let run = res.launch_dir.join("digits-local-s1");
    let pictures = reglab::engine::store::read_pictures(&run);
    let wrong = &pictures["wrong test digits: predicted (true)"];
    match wrong {
        reglab::metrics::picture::Picture::Images { captions, .. } => {
            assert!(!captions.is_empty() && captions.len() <= 24);
            assert_eq!(wrong.image_count(), captions.len());
            let c = &captions[0];
            let (pred, truth) = (c.chars().next().unwrap(), c.chars().nth(3).unwrap());
            assert_ne!(pred, truth, "{c}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_regularizer_the_local_arm_does_not_hold() {
    // The quick profile with the mechanism switched off: reg_weight 0 on the local arm.
    let root = tempfile::tempdir().unwrap();
    let profile = reglab::experiments::find("local-reg-node")
        .unwrap()
        .quick_profile();
    let p = profile.preset().unwrap();
    let mut req = LaunchRequest::from(&profile);
    req.overrides.push(Override {
        key: "reg_weight".into(),
        value: "0".into(),
    });
    let (res, text) = headless::run_captured(&p, &req, root.path(), 2)
        .await
        .unwrap();
    // Neither the authors' local arm nor the accepted-step ablation (which meets the bar with
    // its regularizer on) holds.
    let c = res.verdict.check("i").unwrap();
    assert_ne!(c.outcome, Outcome::Holds, "{text}");
    let ratio = c.numbers["digits-local.s1.nfe_ratio"];
    assert!(ratio > 0.75, "{ratio}\n{text}");
    let a = res.verdict.check("ia").unwrap();
    assert_ne!(a.outcome, Outcome::Holds, "{text}");
    let ratio = a.numbers["digits-local-accepted.s1.nfe_ratio"];
    assert!(ratio > 0.75, "{ratio}\n{text}");
}
