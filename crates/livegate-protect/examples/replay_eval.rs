//! How `fingerprint::perceptual_hash` was chosen, and what it costs.
//!
//! ```text
//! cargo run -p livegate-protect --release --example replay_eval
//! LFW_NPY=target/photos/skimage-lfw_subset.npy DESIGNS=phash,dz \
//!     cargo run -p livegate-protect --release --example replay_eval
//! ```
//!
//! First the cost of `perceptual_hash` per photo (release builds only mean
//! anything). Then, for each candidate design computed here from a plain
//! luma decode (dHash, aHash, DCT hashes with median, sign, magnitude,
//! thermometer and dead-zone codes, on grids of 16 to 128 cells): the worst
//! distance between a photo and its variants (`tests/replay_corpus.rs`),
//! the distribution of distances between different photos and, with
//! `LFW_NPY`, between 100 different aligned faces. `DESIGNS` keeps the
//! designs whose names start with one of its comma-separated prefixes.
use std::collections::BTreeMap;
use std::time::Instant;

use image::imageops::FilterType;
use livegate_protect::fingerprint::perceptual_hash;

#[path = "../tests/replay_corpus.rs"]
#[allow(dead_code, unused_imports)]
mod replay_corpus;
use replay_corpus::corpus;

struct Grids {
    g: std::collections::HashMap<(usize, usize), Vec<f32>>,
}

fn luma(bytes: &[u8]) -> Grids {
    let img = image::load_from_memory(bytes).unwrap().into_luma8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    grids((
        img.into_raw()
            .into_iter()
            .map(f32::from)
            .collect::<Vec<f32>>(),
        w,
        h,
    ))
}

/// The 100 aligned 25x25 face crops of scikit-image's `lfw_subset.npy`.
fn lfw_faces(path: &str) -> Vec<Grids> {
    let d = std::fs::read(path).unwrap();
    let header = u16::from_le_bytes([d[8], d[9]]) as usize;
    let data = &d[10 + header..];
    (0..100)
        .map(|i| {
            let px = (0..625)
                .map(|j| {
                    let o = (i * 625 + j) * 8;
                    (f64::from_le_bytes(data[o..o + 8].try_into().unwrap()) * 255.0) as f32
                })
                .collect();
            grids((px, 25, 25))
        })
        .collect()
}

fn grids(l: (Vec<f32>, usize, usize)) -> Grids {
    let mut g = std::collections::HashMap::new();
    for s in [(9, 8), (8, 8), (16, 16), (32, 32), (64, 64), (128, 128)] {
        g.insert(s, grid(&l, s.0, s.1));
    }
    Grids { g }
}

fn span(i: usize, n: usize, len: usize) -> (usize, usize) {
    let a = i * len / n;
    let b = ((i + 1) * len / n).max(a + 1);
    (a, b)
}

fn grid(l: &(Vec<f32>, usize, usize), gw: usize, gh: usize) -> Vec<f32> {
    let (px, w, h) = l;
    let mut g = vec![0f32; gw * gh];
    for by in 0..gh {
        let (y0, y1) = span(by, gh, *h);
        for bx in 0..gw {
            let (x0, x1) = span(bx, gw, *w);
            let mut s = 0f64;
            for y in y0..y1 {
                for x in x0..x1 {
                    s += px[y * w + x] as f64;
                }
            }
            g[by * gw + bx] = (s / ((y1 - y0) * (x1 - x0)) as f64) as f32;
        }
    }
    g
}

fn dct_low(g: &[f32], n: usize, k: usize) -> Vec<f64> {
    // F[v][u] for u,v < k
    let c = |f: usize, x: usize| {
        (std::f64::consts::PI * (2 * x + 1) as f64 * f as f64 / (2 * n) as f64).cos()
    };
    let mut r = vec![0f64; n * k];
    for y in 0..n {
        for u in 0..k {
            r[y * k + u] = (0..n).map(|x| g[y * n + x] as f64 * c(u, x)).sum();
        }
    }
    let mut f = vec![0f64; k * k];
    for v in 0..k {
        for u in 0..k {
            f[v * k + u] = (0..n).map(|y| r[y * k + u] * c(v, y)).sum();
        }
    }
    f
}

fn bits_median(vals: &[f64]) -> u64 {
    assert_eq!(vals.len(), 64);
    let mut s = vals.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let m = (s[31] + s[32]) / 2.0;
    vals.iter()
        .enumerate()
        .fold(0, |h, (i, &v)| if v > m { h | 1 << i } else { h })
}

/// Thermometer code: for each coefficient, one bit per threshold (c > t).
fn therm(coefs: &[f64], ts: &[f64]) -> u64 {
    assert!(coefs.len() * ts.len() <= 64);
    let mut h = 0u64;
    let mut i = 0;
    for &c in coefs {
        for &t in ts {
            if c > t {
                h |= 1 << i;
            }
            i += 1;
        }
    }
    h
}

fn quantile_abs(c: &[f64], q: f64) -> f64 {
    let mut a: Vec<f64> = c.iter().map(|x| x.abs()).collect();
    a.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let pos = q * (a.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    a[lo] + (a[hi] - a[lo]) * (pos - lo as f64)
}

fn zz(g: &[f32], n: usize, count: usize) -> Vec<f64> {
    let f = dct_low(g, n, 12);
    zigzag(12)
        .into_iter()
        .take(count)
        .map(|(u, v)| f[v * 12 + u])
        .collect()
}

fn zzw(g: &[f32], n: usize, count: usize, w: fn(usize, usize) -> f64) -> Vec<f64> {
    let f = dct_low(g, n, 12);
    zigzag(12)
        .into_iter()
        .take(count)
        .map(|(u, v)| f[v * 12 + u] * w(u, v))
        .collect()
}

fn zigzag(k: usize) -> Vec<(usize, usize)> {
    let mut idx: Vec<(usize, usize)> = (0..k)
        .flat_map(|v| (0..k).map(move |u| (u, v)))
        .filter(|&(u, v)| (u, v) != (0, 0))
        .collect();
    idx.sort_by_key(|&(u, v)| (u + v, u.max(v), v));
    idx.truncate(64);
    idx
}

type Design = (&'static str, fn(&Grids) -> u64);

fn designs() -> Vec<Design> {
    vec![
        ("dhash-9x8", |l| {
            let g = &l.g[&(9, 8)];
            let mut h = 0u64;
            for y in 0..8 {
                for x in 0..8 {
                    if g[y * 9 + x + 1] > g[y * 9 + x] {
                        h |= 1 << (y * 8 + x);
                    }
                }
            }
            h
        }),
        ("ahash-8x8", |l| {
            let g = &l.g[&(8, 8)];
            let m = g.iter().sum::<f32>() / 64.0;
            g.iter()
                .enumerate()
                .fold(0, |h, (i, &v)| if v > m { h | 1 << i } else { h })
        }),
        ("phash32-8x8-dc-median", |l| {
            let f = dct_low(&l.g[&(32, 32)], 32, 8);
            bits_median(&f)
        }),
        ("phash32-1..9-median", |l| {
            let f = dct_low(&l.g[&(32, 32)], 32, 9);
            let v: Vec<f64> = (1..9)
                .flat_map(|v| (1..9).map(move |u| (u, v)))
                .map(|(u, v)| f[v * 9 + u])
                .collect();
            bits_median(&v)
        }),
        ("phash32-zigzag-median", |l| {
            let f = dct_low(&l.g[&(32, 32)], 32, 11);
            let v: Vec<f64> = zigzag(11).into_iter().map(|(u, v)| f[v * 11 + u]).collect();
            bits_median(&v)
        }),
        ("phash32-zigzag-sign", |l| {
            let f = dct_low(&l.g[&(32, 32)], 32, 11);
            zigzag(11)
                .into_iter()
                .enumerate()
                .fold(
                    0,
                    |h, (i, (u, v))| if f[v * 11 + u] > 0.0 { h | 1 << i } else { h },
                )
        }),
        ("phash16-8x8-dc-median", |l| {
            let f = dct_low(&l.g[&(16, 16)], 16, 8);
            bits_median(&f)
        }),
        ("phash128-zigzag-median", |l| {
            let f = dct_low(&l.g[&(128, 128)], 128, 11);
            let v: Vec<f64> = zigzag(11).into_iter().map(|(u, v)| f[v * 11 + u]).collect();
            bits_median(&v)
        }),
        ("phash128-8x8-dc-median", |l| {
            let f = dct_low(&l.g[&(128, 128)], 128, 8);
            bits_median(&f)
        }),
        ("mag128-64", |l| {
            let c = zz(&l.g[&(128, 128)], 128, 64);
            let a: Vec<f64> = c.iter().map(|x| x.abs()).collect();
            bits_median(&a)
        }),
        ("therm2-128-32", |l| {
            let c = zz(&l.g[&(128, 128)], 128, 32);
            let t = quantile_abs(&c, 0.5);
            therm(&c, &[-t, t])
        }),
        ("therm2-32-32", |l| {
            let c = zz(&l.g[&(32, 32)], 32, 32);
            let t = quantile_abs(&c, 0.5);
            therm(&c, &[-t, t])
        }),
        ("therm2-128-32-q33", |l| {
            let c = zz(&l.g[&(128, 128)], 128, 32);
            let t = quantile_abs(&c, 0.33);
            therm(&c, &[-t, t])
        }),
        ("therm4-128-16", |l| {
            let c = zz(&l.g[&(128, 128)], 128, 16);
            let t1 = quantile_abs(&c, 0.33);
            let t2 = quantile_abs(&c, 0.75);
            therm(&c, &[-t2, -t1, t1, t2])
        }),
        ("therm3-128-21", |l| {
            let c = zz(&l.g[&(128, 128)], 128, 21);
            let t = quantile_abs(&c, 0.5);
            therm(&c[..21], &[-t, 0.0, t]) & (u64::MAX >> 1)
        }),
        ("therm2-64-32", |l| {
            let c = zz(&l.g[&(64, 64)], 64, 32);
            let t = quantile_abs(&c, 0.5);
            therm(&c, &[-t, t])
        }),
        ("therm2-128-32-q40", |l| {
            let c = zz(&l.g[&(128, 128)], 128, 32);
            let t = quantile_abs(&c, 0.4);
            therm(&c, &[-t, t])
        }),
        ("therm2w1-128-32", |l| {
            let c = zzw(&l.g[&(128, 128)], 128, 32, |u, v| (u + v) as f64);
            let t = quantile_abs(&c, 0.5);
            therm(&c, &[-t, t])
        }),
        ("therm2w2-128-32", |l| {
            let c = zzw(&l.g[&(128, 128)], 128, 32, |u, v| {
                ((u * u + v * v) as f64).sqrt()
            });
            let t = quantile_abs(&c, 0.5);
            therm(&c, &[-t, t])
        }),
        ("therm2wh-128-32", |l| {
            let c = zzw(&l.g[&(128, 128)], 128, 32, |u, v| ((u + v) as f64).sqrt());
            let t = quantile_abs(&c, 0.5);
            therm(&c, &[-t, t])
        }),
        ("therm4w1-128-16", |l| {
            let c = zzw(&l.g[&(128, 128)], 128, 16, |u, v| (u + v) as f64);
            let t1 = quantile_abs(&c, 0.33);
            let t2 = quantile_abs(&c, 0.75);
            therm(&c, &[-t2, -t1, t1, t2])
        }),
        ("therm4wh-128-16", |l| {
            let c = zzw(&l.g[&(128, 128)], 128, 16, |u, v| ((u + v) as f64).sqrt());
            let t1 = quantile_abs(&c, 0.33);
            let t2 = quantile_abs(&c, 0.75);
            therm(&c, &[-t2, -t1, t1, t2])
        }),
        ("dz-32-q15", |l| {
            let c = zz(&l.g[&(32, 32)], 32, 32);
            let t = quantile_abs(&c, 0.15);
            therm(&c, &[-t, t])
        }),
        ("dz-32-q20", |l| {
            let c = zz(&l.g[&(32, 32)], 32, 32);
            let t = quantile_abs(&c, 0.20);
            therm(&c, &[-t, t])
        }),
        ("dz-32-q25", |l| {
            let c = zz(&l.g[&(32, 32)], 32, 32);
            let t = quantile_abs(&c, 0.25);
            therm(&c, &[-t, t])
        }),
        ("dz-32-q33", |l| {
            let c = zz(&l.g[&(32, 32)], 32, 32);
            let t = quantile_abs(&c, 0.33);
            therm(&c, &[-t, t])
        }),
        ("dz-64-q15", |l| {
            let c = zz(&l.g[&(64, 64)], 64, 32);
            let t = quantile_abs(&c, 0.15);
            therm(&c, &[-t, t])
        }),
        ("dz-64-q20", |l| {
            let c = zz(&l.g[&(64, 64)], 64, 32);
            let t = quantile_abs(&c, 0.20);
            therm(&c, &[-t, t])
        }),
        ("dz-64-q25", |l| {
            let c = zz(&l.g[&(64, 64)], 64, 32);
            let t = quantile_abs(&c, 0.25);
            therm(&c, &[-t, t])
        }),
        ("dz-64-q33", |l| {
            let c = zz(&l.g[&(64, 64)], 64, 32);
            let t = quantile_abs(&c, 0.33);
            therm(&c, &[-t, t])
        }),
        ("dz-128-q15", |l| {
            let c = zz(&l.g[&(128, 128)], 128, 32);
            let t = quantile_abs(&c, 0.15);
            therm(&c, &[-t, t])
        }),
        ("dz-128-q20", |l| {
            let c = zz(&l.g[&(128, 128)], 128, 32);
            let t = quantile_abs(&c, 0.20);
            therm(&c, &[-t, t])
        }),
        ("dz-128-q25", |l| {
            let c = zz(&l.g[&(128, 128)], 128, 32);
            let t = quantile_abs(&c, 0.25);
            therm(&c, &[-t, t])
        }),
        ("dz-128-q33", |l| {
            let c = zz(&l.g[&(128, 128)], 128, 32);
            let t = quantile_abs(&c, 0.33);
            therm(&c, &[-t, t])
        }),
        ("therm4-128-16-eq", |l| {
            let c = zz(&l.g[&(128, 128)], 128, 16);
            let t = quantile_abs(&c, 0.5);
            therm(&c, &[-2.0 * t, -t, t, 2.0 * t])
        }),
        ("phash64-8x8-dc-median", |l| {
            let f = dct_low(&l.g[&(64, 64)], 64, 8);
            bits_median(&f)
        }),
    ]
}

/// Median time of `perceptual_hash` over a few runs.
fn time_hash(bytes: &[u8]) -> f64 {
    let mut runs: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(perceptual_hash(std::hint::black_box(bytes), 50_000_000).unwrap());
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

fn main() {
    let photos = corpus::load(None);
    if cfg!(debug_assertions) {
        eprintln!("debug build: the timings below mean little");
    }
    // A typical upload: a 1 MP JPEG of about 200 KB, made from a corpus photo.
    let garden = photos
        .iter()
        .find(|p| p.name == "mate-Garden.jpg")
        .expect("mate-Garden.jpg");
    let img = image::load_from_memory(&garden.bytes)
        .unwrap()
        .resize_exact(1280, 800, FilterType::Triangle);
    let mut one_mp = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut one_mp, 95)
        .encode_image(&img.to_rgb8())
        .unwrap();
    let mut decode_only: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(image::load_from_memory(std::hint::black_box(&one_mp)).unwrap());
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    decode_only.sort_by(f64::total_cmp);
    println!(
        "perceptual_hash: {:.2} ms for a 1280x800 JPEG of {} KB (mate-Garden.jpg resized, q95); \
         image::load_from_memory alone: {:.2} ms",
        time_hash(&one_mp),
        one_mp.len() / 1024,
        decode_only[7]
    );
    for p in &photos {
        let (w, h) = image::ImageReader::new(std::io::Cursor::new(&p.bytes))
            .with_guessed_format()
            .unwrap()
            .into_dimensions()
            .unwrap();
        println!(
            "perceptual_hash: {:7.2} ms  {:40} {w}x{h} {} KB",
            time_hash(&p.bytes),
            p.name,
            p.bytes.len() / 1024
        );
    }

    let t = Instant::now();
    let vars = corpus::par_map(&photos, corpus::variants);
    eprintln!("variants: {:?}", t.elapsed());
    let t = Instant::now();
    let lumas: Vec<Vec<(&'static str, Grids)>> = corpus::par_map(&photos, |p| {
        let i = photos.iter().position(|q| q.name == p.name).unwrap();
        vars[i].iter().map(|v| (v.kind, luma(&v.bytes))).collect()
    });
    eprintln!("decode: {:?}", t.elapsed());
    let only = std::env::var("DESIGNS").unwrap_or_default();
    if std::env::var("STATS").is_ok() {
        for (p, vs) in photos.iter().zip(&lumas) {
            let f = dct_low(&vs[0].1.g[&(128, 128)], 128, 12);
            let dc = f[0];
            let c = zz(&vs[0].1.g[&(128, 128)], 128, 32);
            let q = quantile_abs(&c, 0.33) / dc;
            let m = quantile_abs(&c, 1.0) / dc;
            println!("{:40} q33/dc {:.4} max/dc {:.4}", p.name, q, m);
        }
    }
    let faces = std::env::var("LFW_NPY").ok().map(|p| lfw_faces(&p));
    for (name, f) in designs() {
        if !only.is_empty() && !only.split(',').any(|d| name.starts_with(d)) {
            continue;
        }
        let hashes: Vec<Vec<(&str, u64)>> = lumas
            .iter()
            .map(|vs| vs.iter().map(|(k, l)| (*k, f(l))).collect())
            .collect();
        let mut same_max: BTreeMap<&str, u32> = BTreeMap::new();
        let mut same_all = vec![];
        for hs in &hashes {
            let o = hs[0].1;
            for (k, h) in hs {
                let d = (o ^ h).count_ones();
                let e = same_max.entry(k).or_default();
                *e = (*e).max(d);
                same_all.push(d);
            }
        }
        let mut diff_min = u32::MAX;
        let mut diff_all = vec![];
        let mut worst = (0, 0);
        for i in 0..hashes.len() {
            for j in 0..hashes.len() {
                if i == j {
                    continue;
                }
                for (_, h) in &hashes[j] {
                    let d = (hashes[i][0].1 ^ h).count_ones();
                    diff_all.push(d);
                    if d < diff_min {
                        diff_min = d;
                        worst = (i, j);
                    }
                }
            }
        }
        let smax = *same_all.iter().max().unwrap();
        if let Some(faces) = &faces {
            let fh: Vec<u64> = faces.iter().map(f).collect();
            let fd: Vec<u32> = (0..fh.len())
                .flat_map(|i| (i + 1..fh.len()).map(move |j| (i, j)))
                .map(|(i, j)| (fh[i] ^ fh[j]).count_ones())
                .collect();
            let m = fd.iter().sum::<u32>() as f64 / fd.len() as f64;
            println!(
                "    LFW faces: {} pairs, min {}, mean {m:.1}, <=7: {}, <=9: {}, <=11: {}",
                fd.len(),
                fd.iter().min().unwrap(),
                fd.iter().filter(|&&d| d <= 7).count(),
                fd.iter().filter(|&&d| d <= 9).count(),
                fd.iter().filter(|&&d| d <= 11).count()
            );
        }
        let ones: f64 = hashes
            .iter()
            .map(|h| h[0].1.count_ones() as f64)
            .sum::<f64>()
            / hashes.len() as f64;
        let diff_le = |t: u32| diff_all.iter().filter(|&&d| d <= t).count();
        let n = diff_all.len() as f64;
        let mean = diff_all.iter().map(|&d| d as f64).sum::<f64>() / n;
        let sd = (diff_all
            .iter()
            .map(|&d| (d as f64 - mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();
        let oo: Vec<u32> = (0..hashes.len())
            .flat_map(|i| (i + 1..hashes.len()).map(move |j| (i, j)))
            .map(|(i, j)| (hashes[i][0].1 ^ hashes[j][0].1).count_ones())
            .collect();
        let oo_mean = oo.iter().sum::<u32>() as f64 / oo.len() as f64;
        println!(
            "    diff mean {mean:.1} sd {sd:.1} z(7.5) {:.2}; orig-orig mean {oo_mean:.1} min {}",
            (mean - 7.5) / sd,
            oo.iter().min().unwrap()
        );
        println!(
            "{name:24} same max {smax:2}  diff min {diff_min:2} ({} vs {})  gap {:3}  ones {ones:.1}  diff<=10: {} <=14: {}  per-kind {:?}",
            photos[worst.0].name,
            photos[worst.1].name,
            diff_min as i64 - smax as i64,
            diff_le(10),
            diff_le(14),
            same_max
        );
        let mut sorted = same_all.clone();
        sorted.sort();
        let worst_same: Vec<String> = hashes
            .iter()
            .enumerate()
            .flat_map(|(i, hs)| {
                hs.iter()
                    .map(move |(k, h)| (i, *k, (hs[0].1 ^ h).count_ones()))
            })
            .filter(|&(_, _, d)| d + 2 >= smax && d > 0)
            .map(|(i, k, d)| format!("{}:{k}={d}", photos[i].name))
            .collect();
        println!("    worst same: {}", worst_same.join(", "));
        let mut per_photo: Vec<(u32, &str, &str)> = hashes
            .iter()
            .enumerate()
            .map(|(i, hs)| {
                hs.iter()
                    .map(|(k, h)| ((hs[0].1 ^ h).count_ones(), photos[i].name.as_str(), *k))
                    .max()
                    .unwrap()
            })
            .collect();
        per_photo.sort();
        per_photo.reverse();
        println!("    per photo worst: {:?}", &per_photo[..10]);
    }
}
