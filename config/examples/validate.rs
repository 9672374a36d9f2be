//! `cargo run -p config --example validate -- FILE...`: prints every diagnostic of each file.

fn main() {
    for arg in std::env::args().skip(1) {
        let path = std::path::Path::new(&arg);
        match config::check_file(path) {
            Ok(report) => {
                println!("{}: {}", path.display(), report.kind);
                for d in &report.diagnostics {
                    println!("  {d}");
                }
            }
            Err(e) => println!("{e}"),
        }
    }
}
