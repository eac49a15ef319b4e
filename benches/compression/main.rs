//! Compression benchmark: edge's fill-time variants against the reference command-line
//! tools, over a corpus of real front-end assets. `benches/compression/run.sh` fetches
//! the corpus and runs this; by hand:
//!
//! ```sh
//! cargo bench --bench compression -- [--json PATH] FILE...
//! ```
//!
//! For every file it makes edge's br, zstd and gzip variants with the default
//! `[compression]` settings (through [`Compressor::encode`], on its worker pool), checks
//! that each decodes back to the file, and runs `gzip -6` (what nginx sends), `brotli -q
//! 11` and `zstd -19` on it. It prints a Markdown table of total bytes and compression
//! time per encoding, a per-file table, and writes everything as JSON (by default to
//! `target/compression-bench.json`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use edge::compress::Compressor;
use edge::config::CompressionConfig;
use edge::http::encoding::Encoding;
use serde_json::json;

/// The reference tools, as `(label, program, arguments before the file)`.
const TOOLS: [(&str, &str, &[&str]); 3] = [
    ("gzip -6", "gzip", &["-6", "-c"]),
    ("brotli -q 11", "brotli", &["-q", "11", "-c"]),
    ("zstd -19", "zstd", &["-19", "-q", "-c"]),
];

/// edge's codings, in the order of the table.
const EDGE: [Encoding; 3] = [Encoding::Br, Encoding::Zstd, Encoding::Gzip];

/// One measured output: its size and how long it took to make.
#[derive(Clone, Copy, Default)]
struct Measure {
    bytes: u64,
    time: Duration,
}

impl std::ops::AddAssign for Measure {
    fn add_assign(&mut self, other: Measure) {
        self.bytes += other.bytes;
        self.time += other.time;
    }
}

struct FileResult {
    name: String,
    identity: u64,
    tools: [Measure; 3],
    edge: [Measure; 3],
    /// What edge serves a client accepting only that coding: the variant when it was
    /// kept, else identity.
    served: [u64; 3],
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut json_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/compression-bench.json");
    let mut files = Vec::new();
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--json" {
            json_path = args.next().context("--json needs a path")?.into();
        } else if arg == "--bench" {
            // cargo bench passes this to every bench binary.
        } else {
            files.push(PathBuf::from(arg));
        }
    }
    ensure!(
        !files.is_empty(),
        "usage: cargo bench --bench compression -- [--json PATH] FILE..."
    );

    let config = CompressionConfig::default();
    let compressor = Compressor::new(&config);
    let mut versions = serde_json::Map::new();
    for (_, program, _) in TOOLS {
        versions.insert(program.into(), tool_version(program)?.into());
    }

    let mut results = Vec::new();
    for path in &files {
        let identity = Bytes::from(
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        );
        let mut tools = [Measure::default(); 3];
        for (slot, (label, program, args)) in tools.iter_mut().zip(TOOLS) {
            *slot = run_tool(program, args, path)
                .with_context(|| format!("{label} on {}", path.display()))?;
        }
        let mut edge = [Measure::default(); 3];
        let mut served = [0; 3];
        for (i, encoding) in EDGE.into_iter().enumerate() {
            let started = Instant::now();
            let variant = compressor.encode(encoding, identity.clone()).await?;
            edge[i] = Measure {
                bytes: variant.len() as u64,
                time: started.elapsed(),
            };
            let decoded = compressor
                .decode(encoding.as_str(), variant.clone(), u64::MAX)
                .await?;
            ensure!(
                decoded == identity,
                "edge {} of {} does not round-trip",
                encoding.as_str(),
                path.display()
            );
            let kept = variant.len() as f64 <= identity.len() as f64 * config.keep_ratio;
            served[i] = if kept { variant.len() } else { identity.len() } as u64;
        }
        let name = display_name(path);
        eprintln!("measured {name}");
        results.push(FileResult {
            name,
            identity: identity.len() as u64,
            tools,
            edge,
            served,
        });
    }

    let report = Report::new(&results, &config);
    println!("{}", report.markdown(&results, &versions));
    let json = report.json(&results, &versions);
    if let Some(dir) = json_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&json_path, serde_json::to_string_pretty(&json)? + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    eprintln!("wrote {}", json_path.display());
    Ok(())
}

/// Runs `program args... file` and measures its standard output.
fn run_tool(program: &str, args: &[&str], file: &Path) -> anyhow::Result<Measure> {
    let started = Instant::now();
    let output = Command::new(program)
        .args(args)
        .arg(file)
        .output()
        .with_context(|| format!("cannot run `{program}` (run.sh installs it)"))?;
    let time = started.elapsed();
    if !output.status.success() {
        bail!(
            "{program} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(Measure {
        bytes: output.stdout.len() as u64,
        time,
    })
}

fn tool_version(program: &str) -> anyhow::Result<String> {
    let output = Command::new(program)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run `{program}` (run.sh installs it)"))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    Ok(text
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches('*')
        .trim()
        .to_owned())
}

/// `package/.../file.min.js` → `package/file.min.js`, for the tables.
fn display_name(path: &Path) -> String {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let package = path
        .ancestors()
        .filter_map(|a| a.file_name())
        .map(|a| a.to_string_lossy().into_owned())
        .find(|a| {
            a.chars().any(|c| c.is_ascii_alphabetic())
                && *a != file
                && !["dist", "build", "umd", "js", "css", "package"].contains(&a.as_str())
        });
    match package {
        Some(package) => format!("{package}/{file}"),
        None => file,
    }
}

/// Totals over the corpus.
struct Report {
    identity: u64,
    tools: [Measure; 3],
    edge: [Measure; 3],
    served: [u64; 3],
    levels: String,
}

impl Report {
    fn new(results: &[FileResult], config: &CompressionConfig) -> Report {
        let mut report = Report {
            identity: 0,
            tools: [Measure::default(); 3],
            edge: [Measure::default(); 3],
            served: [0; 3],
            levels: format!(
                "br {}, zstd {}, gzip {} up to {} bytes",
                config.levels.br, config.levels.zstd, config.levels.gzip, config.strong_max_size
            ),
        };
        for r in results {
            report.identity += r.identity;
            for i in 0..3 {
                report.tools[i] += r.tools[i];
                report.edge[i] += r.edge[i];
                report.served[i] += r.served[i];
            }
        }
        report
    }

    fn gzip6(&self) -> u64 {
        self.tools[0].bytes
    }

    /// Rows of the summary: label, bytes, time (None for identity).
    fn rows(&self) -> Vec<(String, u64, Option<Duration>)> {
        let mut rows = vec![("identity".to_owned(), self.identity, None)];
        for (i, (label, _, _)) in TOOLS.iter().enumerate() {
            let note = if i == 0 { " (what nginx sends)" } else { "" };
            rows.push((
                format!("`{label}` CLI{note}"),
                self.tools[i].bytes,
                Some(self.tools[i].time),
            ));
        }
        for (i, encoding) in EDGE.iter().enumerate() {
            rows.push((
                format!("edge {}", encoding.as_str()),
                self.edge[i].bytes,
                Some(self.edge[i].time),
            ));
        }
        rows
    }

    fn markdown(
        &self,
        results: &[FileResult],
        versions: &serde_json::Map<String, serde_json::Value>,
    ) -> String {
        let mut out = String::new();
        let ratio = |a: u64, b: u64| a as f64 / b as f64;
        out += &format!(
            "Corpus: {} files, {} bytes. edge levels: {}. Tools: {}.\n\n",
            results.len(),
            thousands(self.identity),
            self.levels,
            versions
                .values()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        );
        out += "| encoding | total bytes | × identity | × gzip -6 | compression time |\n";
        out += "| --- | ---: | ---: | ---: | ---: |\n";
        for (label, bytes, time) in self.rows() {
            out += &format!(
                "| {label} | {} | {:.3} | {:.3} | {} |\n",
                thousands(bytes),
                ratio(bytes, self.identity),
                ratio(bytes, self.gzip6()),
                time.map_or("—".to_owned(), |t| format!("{:.2} s", t.as_secs_f64())),
            );
        }
        let br_vs_cli = (ratio(self.edge[0].bytes, self.tools[1].bytes) - 1.0) * 100.0;
        let zstd_vs_cli = (ratio(self.edge[1].bytes, self.tools[2].bytes) - 1.0) * 100.0;
        out += &format!(
            "\nedge br vs `brotli -q 11`: {br_vs_cli:+.2}% (target: within 1%); edge zstd vs `zstd -19`: {zstd_vs_cli:+.2}%.\n"
        );
        if self.served != [self.edge[0].bytes, self.edge[1].bytes, self.edge[2].bytes] {
            out += &format!(
                "Some variants were not kept (over keep_ratio); served totals br/zstd/gzip: {:?}\n",
                self.served
            );
        }
        out += "\n| file | identity | gzip -6 | brotli -q 11 | edge br | zstd -19 | edge zstd | edge gzip |\n";
        out += "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
        for r in results {
            out += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                r.name,
                thousands(r.identity),
                thousands(r.tools[0].bytes),
                thousands(r.tools[1].bytes),
                thousands(r.edge[0].bytes),
                thousands(r.tools[2].bytes),
                thousands(r.edge[1].bytes),
                thousands(r.edge[2].bytes),
            );
        }
        out
    }

    fn json(
        &self,
        results: &[FileResult],
        versions: &serde_json::Map<String, serde_json::Value>,
    ) -> serde_json::Value {
        let measure = |m: Measure| json!({ "bytes": m.bytes, "seconds": m.time.as_secs_f64() });
        let file = |r: &FileResult| {
            json!({
                "file": r.name,
                "identity": r.identity,
                "gzip_6": measure(r.tools[0]),
                "brotli_11": measure(r.tools[1]),
                "zstd_19": measure(r.tools[2]),
                "edge_br": measure(r.edge[0]),
                "edge_zstd": measure(r.edge[1]),
                "edge_gzip": measure(r.edge[2]),
                "served": { "br": r.served[0], "zstd": r.served[1], "gzip": r.served[2] },
            })
        };
        json!({
            "levels": self.levels,
            "tools": versions,
            "totals": {
                "identity": self.identity,
                "gzip_6": measure(self.tools[0]),
                "brotli_11": measure(self.tools[1]),
                "zstd_19": measure(self.tools[2]),
                "edge_br": measure(self.edge[0]),
                "edge_zstd": measure(self.edge[1]),
                "edge_gzip": measure(self.edge[2]),
                "served": { "br": self.served[0], "zstd": self.served[1], "gzip": self.served[2] },
                "edge_br_vs_brotli_11": self.edge[0].bytes as f64 / self.tools[1].bytes as f64,
                "brotli_11_vs_gzip_6": self.tools[1].bytes as f64 / self.gzip6() as f64,
                "edge_br_vs_gzip_6": self.edge[0].bytes as f64 / self.gzip6() as f64,
                "edge_zstd_vs_gzip_6": self.edge[1].bytes as f64 / self.gzip6() as f64,
            },
            "files": results.iter().map(file).collect::<Vec<_>>(),
        })
    }
}

/// `1234567` → `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
