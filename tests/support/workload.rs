//! Seeded workloads shared by tests and benches: a small deterministic generator (so a failing
//! seed replays exactly) and a Zipf sampler.

#![allow(dead_code)]

/// xorshift64*.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Zipf(s) over 0..n by inverse CDF.
pub struct Zipf(Vec<f64>);

impl Zipf {
    pub fn new(n: usize, s: f64) -> Zipf {
        let mut cdf: Vec<f64> = (1..=n).map(|k| 1.0 / (k as f64).powf(s)).collect();
        let mut acc = 0.0;
        for p in cdf.iter_mut() {
            acc += *p;
            *p = acc;
        }
        cdf.iter_mut().for_each(|p| *p /= acc);
        Zipf(cdf)
    }
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        let u = rng.unit();
        self.0.partition_point(|&p| p < u).min(self.0.len() - 1) as u64
    }
}
