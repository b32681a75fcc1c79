//! `cargo bench`: prints the same figures as `reglab bench`.

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    print!("{}", reglab::bench::report(quick));
}
