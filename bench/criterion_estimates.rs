//! Reading back what criterion measured in this run, so a benchmark can end
//! with ratios of times measured side by side (shared by the crates'
//! benchmarks through `#[path]`).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Where criterion keeps its estimates: `CRITERION_HOME`, else
/// `<target>/criterion` (a bench executable is `<target>/<profile>/deps/…`).
pub(crate) fn criterion_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return Some(PathBuf::from(home));
    }
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.join("criterion"))
}

/// Mean time in ns of the benchmark whose directory is `dir`, if criterion
/// wrote it since `since` (this run).
pub(crate) fn mean_ns(dir: &Path, since: SystemTime) -> Option<f64> {
    let file = dir.join("new").join("estimates.json");
    if std::fs::metadata(&file).ok()?.modified().ok()? < since {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(file).ok()?).ok()?;
    v["mean"]["point_estimate"].as_f64()
}
