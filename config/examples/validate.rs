//! `cargo run -p config --example validate -- FILE...`: prints the diagnostics of each file
//! (the first `config::MAX_REPORTED`, then the count of the rest).

fn main() {
    for arg in std::env::args().skip(1) {
        let path = std::path::Path::new(&arg);
        match config::check_file(path) {
            Ok(report) => {
                println!("{}: {}", path.display(), report.kind);
                for d in &report.diagnostics {
                    println!("  {d}");
                }
                if report.omitted > 0 {
                    println!("  ... and {} more error(s) not shown", report.omitted);
                }
            }
            Err(e) => println!("{e}"),
        }
    }
}
