//! obc-sr: the solver's batching and determinism, the degradation and rank statistics against
//! hand values (unit tests in the module), the claim on the quick profile, and the search
//! switched off (one candidate: the "searched" boundary condition is one random draw).

use dfdx::prelude::Cpu;
use rand::rngs::StdRng;
use rand::SeedableRng;

use reglab::experiments::diffusion::{
    gaussian_rows, train_eps_net, EpsNetConfig, NoiseSchedule, TrainConfig,
};
use reglab::experiments::obc::search::{conditions, Prior, HR};
use reglab::headless;
use reglab::verdict::Outcome;

async fn quick_launch(
    extra: &[(&str, &str)],
    arms: Option<&[&str]>,
) -> (
    reglab::verdict::Verdict,
    String,
    std::path::PathBuf,
    tempfile::TempDir,
) {
    let root = tempfile::tempdir().unwrap();
    let (res, text) = headless::run_quick("obc-sr", arms, extra, root.path())
        .await
        .unwrap();
    (res.verdict, text, res.launch_dir, root)
}

#[test]
fn the_grid_solver_matches_one_solve_per_candidate_and_is_deterministic() {
    let dev = Cpu::default();
    let digits = reglab::experiments::diffusion::SignedDigits::load(0);
    let x = &digits.x_train[..32 * HR];
    let cond = conditions(x);
    let trained = train_eps_net::<f32, Cpu>(
        &dev,
        &NoiseSchedule::ddpm(),
        EpsNetConfig {
            cond_dim: HR,
            hidden: 32,
            ..EpsNetConfig::digits()
        },
        TrainConfig {
            steps: 20,
            batch: 16,
            lr: 1e-3,
            seed: 0,
        },
        x,
        &cond,
        &mut |_, _| true,
    )
    .unwrap();
    let (store, net) = trained.load::<f32, Cpu>(&dev);
    let prior = Prior {
        store,
        net,
        schedule: NoiseSchedule::ddpm(),
    };
    let ts = prior.schedule.respaced(5);
    let cands = gaussian_rows(3, HR, &mut StdRng::seed_from_u64(1));
    let images = &cond[..4 * HR];
    let grid = prior.solve_grid(&ts, &cands, images);
    assert_eq!(grid.len(), 3 * 4 * HR);
    for (c, cand) in cands.chunks(HR).enumerate() {
        let tops: Vec<f32> = (0..4).flat_map(|_| cand.iter().copied()).collect();
        let one = prior.solve(&ts, &tops, images, 0.0, 0);
        let block = &grid[c * 4 * HR..(c + 1) * 4 * HR];
        for (a, b) in one.iter().zip(block) {
            assert!((a - b).abs() < 1e-5, "candidate {c}: {a} vs {b}");
        }
        // eta 0: the same boundary condition gives the same output whatever the noise seed.
        assert_eq!(one, prior.solve(&ts, &tops, images, 0.0, 99));
    }
    // eta 1 draws fresh noise: a different seed, a different output.
    let tops: Vec<f32> = cands[..HR].to_vec();
    assert_ne!(
        prior.solve(&ts, &tops, &cond[..HR], 1.0, 1),
        prior.solve(&ts, &tops, &cond[..HR], 1.0, 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_quick_profile_the_searched_start_beats_random_noise() {
    let (v, text, dir, _root) = quick_launch(&[], None).await;
    let c1 = v.check("1").unwrap();
    assert_eq!(c1.outcome, Outcome::Holds, "{text}");
    // The control is decided either way (not left out for a prior that ignores its condition).
    assert_ne!(v.check("4").unwrap().evidence.len(), 0, "{text}");
    assert!(
        v.check("3").unwrap().numbers["s0.k5.rho"].is_finite(),
        "{text}"
    );
    let run = dir.join("obc-s0");
    let params = reglab::artifacts::read(&run.join("params.safetensors")).unwrap();
    assert!(params.contains_key("eps.0.weight"));
    let data = reglab::artifacts::read(&run.join("data.safetensors")).unwrap();
    assert_eq!(data["candidates"].shape, vec![64, HR]);
    assert_eq!(data["outputs_k10"].shape, vec![64, HR]);
    assert_eq!(data["candidate_psnr_R_k10"].shape, vec![64]);
    let pictures = reglab::engine::store::read_pictures(&run);
    assert!(!pictures.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_candidate_the_search_is_off_and_the_claim_does_not_hold() {
    let (v, text, _dir, _root) =
        quick_launch(&[("candidates", "1")], Some(&["obc", "random"])).await;
    assert_ne!(v.check("1").unwrap().outcome, Outcome::Holds, "{text}");
    // One candidate has no ranking to transfer.
    assert_eq!(v.check("3").unwrap().outcome, Outcome::Fails, "{text}");
    assert_ne!(v.outcome(), Outcome::Holds, "{text}");
}
