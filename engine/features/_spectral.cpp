// voxflip.engine.features._spectral: the per-frame spectral envelope (CheapTrick) and band
// aperiodicity (D4C) of the WORLD analysis, compiled. The Python face is engine/features/world.py
// (WorldAnalyzer); the methods are Morise's: CheapTrick (Speech Communication 67, 2015) and D4C
// (Speech Communication 84, 2016), written here from their descriptions for frame-by-frame use.
// Also the engine's one filter with a moving cut-off (tracking_highpass, below), which must run
// sample by sample.
//
// Why our own and not pyworld's (which this replaces in the converters, and which the tests use as
// the reference):
//  * Every frame is a function of its own samples. pyworld adds a pseudo-random guard noise whose
//    generator restarts at every call, so a frame analysed among others depended on the frames
//    before it in the call; voxflip therefore called pyworld once per frame, paying its set-up
//    (FFT plans, allocations) 12,000 times a minute. Here the guards are constants, so a whole
//    chunk is one call, and all buffers and FFT tables are made once per call.
//  * D4C's voiced/unvoiced pre-check ("LoveTrain") is not computed: voxflip runs D4C with
//    threshold 0, where the check never changes a result.
//  * The largest values of a band's group-delay spectrum are found by selection, not a full sort.
//  * The work runs without the GIL, so another thread can analyse at the same time.
//
// Conventions kept from WORLD so that the numbers agree with pyworld's to rounding on real voices
// (tests/test_engine_spectral.py): F0-adaptive windows centred on the sample nearest the frame,
// reaching at most `reach` samples either side (samples beyond are the edge sample repeated, as
// pyworld does on a piece of 2 * reach + 1 samples), the window's weighted mean removed, the
// aliased negative frequencies below F0 folded back ("DC correction"), box smoothing through the
// piecewise-linear cumulative spectrum, and the same constants.

#include "real_fft.h"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace py = pybind11;

namespace {

using voxflip::kPi;
using voxflip::RealFFT;

// CheapTrick: an unvoiced frame (or one below the FFT's lowest F0) is analysed as this F0
constexpr double kUnvoicedF0 = 500.0;
// CheapTrick: the spectral recovery lifter's q1
constexpr double kQ1 = -0.15;
// a floor added to the smoothed power before its log (WORLD adds |noise| of this size)
constexpr double kPowerFloor = 2.220446049250313e-16;
// D4C: bands every 3 kHz up to 15 kHz or 3 kHz below Nyquist, the lowest F0 its FFT is sized for
constexpr double kBandHz = 3000.0;
constexpr double kBandTopHz = 15000.0;
constexpr double kD4CFloorF0 = 47.0;
// D4C: the aperiodicity of an unvoiced frame, and of the top of the spectrum (dB: just under 0)
constexpr double kUnvoicedAperiodicity = 1.0 - 1e-12;
constexpr double kTopAperiodicityDb = -1e-12;
constexpr double kBottomAperiodicityDb = -60.0;
// D4C: the guard noise added to every windowed sample (an empty band reads as noise, not as
// rounding error), the same fixed sequence in every frame
constexpr double kD4CGuard = 1e-6;

// `count` standard normal values from a fixed seed (xorshift64*, Box-Muller): the guard noise
std::vector<double> guard_noise(int count) {
  std::vector<double> out(count);
  std::uint64_t s = 0x9E3779B97F4A7C15ull;
  auto uniform = [&s]() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return ((s * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);  // [0, 1)
  };
  for (int i = 0; i < count; i += 2) {
    const double u = 1.0 - uniform(), v = uniform();
    const double radius = std::sqrt(-2.0 * std::log(u));
    out[i] = radius * std::cos(2.0 * kPi * v);
    if (i + 1 < count) out[i + 1] = radius * std::sin(2.0 * kPi * v);
  }
  return out;
}

inline int round_half_up(double x) {  // WORLD's rounding: half away from zero
  return x > 0 ? static_cast<int>(x + 0.5) : static_cast<int>(x - 0.5);
}

// cos and sin of start + k * step for k = 0, 1, ...: one rotation per step instead of a cos and a
// sin, re-anchored every 64 steps so that the rounding does not build up.
class Rotation {
 public:
  Rotation(double start, double step)
      : start_(start), step_(step), cos(std::cos(start)), sin(std::sin(start)), dc_(std::cos(step)), ds_(std::sin(step)) {}
  void next() {
    if (++k_ % 64 == 0) {
      cos = std::cos(start_ + k_ * step_);
      sin = std::sin(start_ + k_ * step_);
      return;
    }
    const double c = cos * dc_ - sin * ds_;
    sin = sin * dc_ + cos * ds_;
    cos = c;
  }

 private:
  double start_, step_;
  long k_ = 0;

 public:
  double cos, sin;

 private:
  double dc_, ds_;
};

// Fold the aliased negative frequencies below f0 back onto the spectrum: bin k (k*df < f0 + df)
// gains the spectrum's value at f0 - k*df (linear interpolation on the bin grid).
void fold_below_f0(std::vector<double>& spec, double f0, double df, std::vector<double>& tmp) {
  const int upper = 2 + static_cast<int>(f0 / df);
  const int bins = static_cast<int>(spec.size());
  const int count = std::min(upper - 1, bins);
  tmp.resize(count);
  for (int k = 0; k < count; ++k) {
    const double pos = f0 / df - k;
    const int base = static_cast<int>(pos);
    const double frac = pos - base;
    const double next = base + 1 < bins && base + 1 <= upper ? spec[base + 1] : spec[base];
    tmp[k] = spec[base] + (next - spec[base]) * frac;
  }
  for (int k = 0; k < count; ++k) spec[k] += tmp[k];
}

// Box smoothing over `width` Hz: (C(f + w/2) - C(f - w/2)) / w, C the piecewise-linear integral
// of the spectrum mirrored at both ends.
void box_smooth(const std::vector<double>& in, double width, double df, std::vector<double>& out,
                std::vector<double>& cum) {
  const int bins = static_cast<int>(in.size());
  const int last = bins - 1;
  const int edge = static_cast<int>(width / df) + 1;
  const int total = last + 2 * edge + 1;
  cum.resize(total);
  double acc = 0.0;
  for (int i = 0; i < total; ++i) {
    double v;
    if (i < edge) v = in[edge - i];
    else if (i < last + edge) v = in[i - edge];
    else v = in[last - (i - (last + edge))];
    acc += v * df;
    cum[i] = acc;
  }
  const double origin = -(edge - 0.5) * df;
  auto at = [&](double f) {
    const double pos = (f - origin) / df;
    const int base = static_cast<int>(pos);
    const double frac = pos - base;
    const double step = base + 1 < total ? cum[base + 1] - cum[base] : 0.0;
    return cum[base] + step * frac;
  };
  out.resize(bins);
  for (int k = 0; k < bins; ++k) {
    const double f = k * df;
    out[k] = (at(f + width / 2.0) - at(f - width / 2.0)) / width;
  }
}

// One frame's reach of the segment: samples [lo, hi], the frame's centre at `centre`.
struct Reach {
  const double* x;
  std::int64_t centre, lo, hi;
  double scale;  // 2**-k for a frame analysed scaled down
  double at(std::int64_t i) const { return x[std::min(hi, std::max(lo, i))] * scale; }
};

// F0-adaptive windowing into `wave` (zero beyond the window): shape 0 = Hann, 1 = Blackman, over
// `ratio` periods, plus the guard noise; the window's weighted mean is removed. Returns the
// window's length (at most the FFT size: `noise` holds that many values).
int window_frame(const Reach& r, std::int64_t origin, double f0, int fs, int shape, double ratio,
                 const double* noise, std::vector<double>& wave, std::vector<double>& win) {
  const int half = round_half_up(ratio * fs / f0 / 2.0);
  const int length = 2 * half + 1;
  win.resize(length);
  std::fill(wave.begin(), wave.end(), 0.0);
  double sum_x = 0.0, sum_w = 0.0;
  Rotation phase(-half * (2.0 * kPi * f0 / ratio / fs), 2.0 * kPi * f0 / ratio / fs);
  for (int i = 0; i < length; ++i, phase.next()) {
    const double c = phase.cos;
    const double w = shape == 0 ? 0.5 * c + 0.5 : 0.42 + 0.5 * c + 0.08 * (2.0 * c * c - 1.0);
    win[i] = w;
    wave[i] = r.at(origin + i - half) * w + noise[i] * kD4CGuard;
    sum_x += wave[i];
    sum_w += w;
  }
  const double mean = sum_x / sum_w;
  for (int i = 0; i < length; ++i) wave[i] -= win[i] * mean;
  return length;
}

struct EnvelopeWork {
  explicit EnvelopeWork(int n) : fft(n), wave(n), re(n / 2 + 1), im(n / 2 + 1), power(n / 2 + 1),
                                 smooth(n / 2 + 1), cep(n) {}
  RealFFT fft;
  std::vector<double> wave, win, re, im, power, smooth, cum, tmp, cep;
};

// CheapTrick for one frame: `out` gets n/2 + 1 bins of the power envelope.
void envelope_frame(const Reach& r, double f0, int fs, EnvelopeWork& w, double* out) {
  const int n = w.fft.size(), bins = n / 2 + 1;
  const double df = static_cast<double>(fs) / n;
  const int half = round_half_up(1.5 * fs / f0);
  const int length = 2 * half + 1;
  w.win.resize(length);
  double energy = 0.0;
  Rotation phase(-half * (kPi * f0 / 1.5 / fs), kPi * f0 / 1.5 / fs);
  for (int i = 0; i < length; ++i, phase.next()) {
    const double v = 0.5 * phase.cos + 0.5;
    w.win[i] = v;
    energy += v * v;
  }
  const double norm = std::sqrt(energy);
  double sum_x = 0.0, sum_w = 0.0;
  std::fill(w.wave.begin(), w.wave.end(), 0.0);
  for (int i = 0; i < length; ++i) {
    const double v = w.win[i] / norm;
    w.win[i] = v;
    w.wave[i] = r.at(r.centre + i - half) * v;
    sum_x += w.wave[i];
    sum_w += v;
  }
  const double mean = sum_x / sum_w;
  for (int i = 0; i < length; ++i) w.wave[i] -= w.win[i] * mean;
  w.fft.forward(w.wave.data(), w.re.data(), w.im.data());
  for (int k = 0; k < bins; ++k) w.power[k] = w.re[k] * w.re[k] + w.im[k] * w.im[k];
  fold_below_f0(w.power, f0, df, w.tmp);
  box_smooth(w.power, f0 * 2.0 / 3.0, df, w.smooth, w.cum);
  // log spectrum, mirrored to a whole period; its transform is the (real, even) cepstrum
  for (int k = 0; k < bins; ++k) w.cep[k] = std::log(w.smooth[k] + kPowerFloor);
  for (int k = 1; k < n / 2; ++k) w.cep[n - k] = w.cep[k];
  w.fft.forward(w.cep.data(), w.re.data(), w.im.data());
  // smoothing lifter (sinc: a box of width f0 on the log spectrum) times the recovery lifter
  w.re[0] /= n;
  w.im[0] = 0.0;
  Rotation lift(kPi * f0 / fs, kPi * f0 / fs);   // at quefrency k / fs: angle pi f0 k / fs
  for (int k = 1; k < bins; ++k, lift.next()) {
    const double angle = kPi * f0 * k / fs;
    const double smooth = lift.sin / angle;
    const double recover = (1.0 - 2.0 * kQ1) + 2.0 * kQ1 * (2.0 * lift.cos * lift.cos - 1.0);
    w.re[k] *= smooth * recover / n;
    w.im[k] = 0.0;
  }
  w.fft.inverse(w.re.data(), w.im.data(), w.cep.data());
  for (int k = 0; k < bins; ++k) out[k] = std::exp(w.cep[k]);
}

struct AperiodicityWork {
  AperiodicityWork(int n, int fs, int out_bins, double out_df)
      : sample_rate(fs), out_bins(out_bins), fft(n), wave(n), re(n / 2 + 1), im(n / 2 + 1), re1(n / 2 + 1),
        im1(n / 2 + 1), centroid(n / 2 + 1),
        power(n / 2 + 1), delay(n / 2 + 1), coarse_delay(n / 2 + 1), band(n / 2 + 1), noise(guard_noise(3 * n)) {
    bands = static_cast<int>(std::min(kBandTopHz, fs / 2.0 - kBandHz) / kBandHz);
    const int band_len = static_cast<int>(kBandHz * n / fs) * 2 + 1;
    nuttall.resize(band_len);
    for (int i = 0; i < band_len; ++i) {
      const double t = i / (band_len - 1.0);
      nuttall[i] = 0.355768 - 0.487396 * std::cos(2.0 * kPi * t) + 0.144232 * std::cos(4.0 * kPi * t) -
                   0.012604 * std::cos(6.0 * kPi * t);
    }
    largest = round_half_up(n * 8.0 / band_len) + 1;
    // the coarse values sit at 0, 3, 6, ... kHz and at Nyquist; each output bin between two
    coarse.assign(bands + 2, 0.0);
    coarse_hz.assign(bands + 2, 0.0);
    for (int i = 0; i <= bands; ++i) coarse_hz[i] = i * kBandHz;
    coarse_hz[bands + 1] = fs / 2.0;
    bin_seg.resize(out_bins);
    bin_frac.resize(out_bins);
    for (int k = 0; k < out_bins; ++k) {
      const double f = k * out_df;
      int s = 0;
      while (s < bands && f >= coarse_hz[s + 1]) ++s;
      bin_seg[k] = s;
      bin_frac[k] = (f - coarse_hz[s]) / (coarse_hz[s + 1] - coarse_hz[s]);
    }
  }
  int sample_rate, out_bins;
  RealFFT fft;
  std::vector<double> wave, win, re, im, re1, im1, centroid, power, delay, coarse_delay, band, noise, cum, tmp, nuttall;
  std::vector<double> coarse, coarse_hz, bin_frac;
  std::vector<int> bin_seg;
  int bands = 0, largest = 0;
};

// The energy centroid spectrum of one window (Blackman, 4 periods, unit energy) at `origin`.
void add_centroid(const Reach& r, std::int64_t origin, double f0, int fs, const double* noise, AperiodicityWork& w) {
  const int n = w.fft.size(), bins = n / 2 + 1;
  const int length = window_frame(r, origin, f0, fs, 1, 4.0, noise, w.wave, w.win);
  double energy = 0.0;
  for (int i = 0; i < length; ++i) energy += w.wave[i] * w.wave[i];
  const double norm = energy > 0.0 ? 1.0 / std::sqrt(energy) : 0.0;
  for (int i = 0; i < length; ++i) w.wave[i] *= norm;
  w.fft.forward(w.wave.data(), w.re1.data(), w.im1.data());
  for (int i = 0; i < length; ++i) w.wave[i] *= i + 1.0;
  w.fft.forward(w.wave.data(), w.re.data(), w.im.data());
  for (int k = 0; k < bins; ++k) w.centroid[k] += w.re[k] * w.re1[k] + w.im[k] * w.im1[k];
}

// D4C for one voiced frame: `out` gets the aperiodicity (amplitude ratio) at `out_bins` bins.
void aperiodicity_frame(const Reach& r, double f0, int fs, AperiodicityWork& w, double* out, int out_bins) {
  const int n = w.fft.size(), bins = n / 2 + 1;
  const double df = static_cast<double>(fs) / n;
  f0 = std::max(f0, kD4CFloorF0);
  // temporally static group delay: the centroids a quarter period either side, over the smoothed power
  std::fill(w.centroid.begin(), w.centroid.end(), 0.0);
  const double quarter = 0.25 * fs / f0;
  add_centroid(r, r.centre + static_cast<std::int64_t>(std::floor(-quarter + 0.501)), f0, fs, w.noise.data(), w);
  add_centroid(r, r.centre + static_cast<std::int64_t>(std::floor(quarter + 0.501)), f0, fs, w.noise.data() + n, w);
  fold_below_f0(w.centroid, f0, df, w.tmp);
  window_frame(r, r.centre, f0, fs, 0, 4.0, w.noise.data() + 2 * n, w.wave, w.win);
  w.fft.forward(w.wave.data(), w.re.data(), w.im.data());
  for (int k = 0; k < bins; ++k) w.power[k] = w.re[k] * w.re[k] + w.im[k] * w.im[k];
  fold_below_f0(w.power, f0, df, w.tmp);
  box_smooth(w.power, f0, df, w.band, w.cum);
  for (int k = 0; k < bins; ++k) w.power[k] = w.band[k] > 0.0 ? w.centroid[k] / w.band[k] : 0.0;
  box_smooth(w.power, f0 / 2.0, df, w.delay, w.cum);
  box_smooth(w.delay, f0, df, w.coarse_delay, w.cum);
  for (int k = 0; k < bins; ++k) w.delay[k] -= w.coarse_delay[k];
  // per band: how much of the windowed group delay's power lies outside its largest components
  const int band_len = static_cast<int>(w.nuttall.size()), half = band_len / 2;
  std::vector<double>& coarse = w.coarse;
  coarse[0] = kBottomAperiodicityDb;
  coarse[w.bands + 1] = kTopAperiodicityDb;
  for (int b = 0; b < w.bands; ++b) {
    const int centre = static_cast<int>(kBandHz * (b + 1) * n / fs);
    std::fill(w.wave.begin(), w.wave.end(), 0.0);
    for (int j = 0; j < band_len; ++j) w.wave[j] = w.delay[centre - half + j] * w.nuttall[j];
    w.fft.forward(w.wave.data(), w.re.data(), w.im.data());
    double total = 0.0;
    for (int k = 0; k < bins; ++k) {
      w.band[k] = w.re[k] * w.re[k] + w.im[k] * w.im[k];
      total += w.band[k];
    }
    std::nth_element(w.band.begin(), w.band.begin() + (bins - w.largest), w.band.begin() + bins);
    double rest = 0.0;
    for (int k = 0; k < bins - w.largest; ++k) rest += w.band[k];
    const double db = total > 0.0 && rest > 0.0 ? 10.0 * std::log10(rest / total) : 0.0;
    coarse[b + 1] = std::min(0.0, db + (f0 - 100.0) / 50.0);
  }
  for (int k = 0; k < out_bins; ++k) {
    const int s = w.bin_seg[k];
    const double db = coarse[s] + (coarse[s + 1] - coarse[s]) * w.bin_frac[k];
    out[k] = std::exp(db * (std::log(10.0) / 20.0));
  }
}

using Samples = py::array_t<double, py::array::c_style | py::array::forcecast>;
using Indices = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;
using Exponents = py::array_t<int, py::array::c_style | py::array::forcecast>;

struct FrameArgs {
  const double* x;
  std::int64_t length;
  const std::int64_t* centres;
  const double* f0;
  const int* exponents;
  py::ssize_t frames;
};

FrameArgs check_frames(const Samples& segment, const Indices& centres, const Samples& f0, const Exponents& exponents,
                       std::int64_t reach, int fs, int fft_size) {
  if (segment.ndim() != 1) throw std::invalid_argument("segment must be 1-D");
  if (centres.ndim() != 1 || f0.ndim() != 1 || exponents.ndim() != 1 || centres.shape(0) != f0.shape(0) ||
      centres.shape(0) != exponents.shape(0))
    throw std::invalid_argument("centres, f0 and exponents must be 1-D and of one length");
  if (fs < 1000) throw std::invalid_argument("sample_rate " + std::to_string(fs) + " must be >= 1000 Hz");
  if (fft_size < 64 || (fft_size & (fft_size - 1)))
    throw std::invalid_argument("fft_size " + std::to_string(fft_size) + " must be a power of two >= 64");
  if (reach < 0) throw std::invalid_argument("reach must be >= 0");
  FrameArgs a{segment.data(), segment.shape(0), centres.data(), f0.data(), exponents.data(), centres.shape(0)};
  for (py::ssize_t i = 0; i < a.frames; ++i) {
    if (a.centres[i] - reach < 0 || a.centres[i] + reach >= a.length)
      throw std::invalid_argument("frame " + std::to_string(i) + " at sample " + std::to_string(a.centres[i]) +
                                  " does not have " + std::to_string(reach) + " samples on both sides in a segment of " +
                                  std::to_string(a.length));
    if (!std::isfinite(a.f0[i]) || a.f0[i] < 0.0)
      throw std::invalid_argument("f0 of frame " + std::to_string(i) + " must be finite and >= 0");
  }
  return a;
}

Reach reach_of(const FrameArgs& a, py::ssize_t i, std::int64_t reach) {
  const std::int64_t c = a.centres[i];
  return Reach{a.x, c, c - reach, c + reach, std::ldexp(1.0, -a.exponents[i])};
}

// cheaptrick() and d4c(): the arguments checked, then `analyse(a, rows, bins)` without the GIL,
// filling `rows`, one row of fft_size / 2 + 1 bins per frame.
template <class Analyse>
py::array_t<double> per_frame(const Samples& segment, const Indices& centres, const Samples& f0, const Exponents& exponents,
                              std::int64_t reach, int sample_rate, int fft_size, Analyse&& analyse) {
  const FrameArgs a = check_frames(segment, centres, f0, exponents, reach, sample_rate, fft_size);
  const int bins = fft_size / 2 + 1;
  py::array_t<double> out({a.frames, static_cast<py::ssize_t>(bins)});
  double* rows = out.mutable_data();
  {
    py::gil_scoped_release release;
    analyse(a, rows, bins);
  }
  return out;
}

py::array_t<double> cheaptrick(const Samples& segment, const Indices& centres, const Samples& f0, const Exponents& exponents,
                               std::int64_t reach, int sample_rate, int fft_size) {
  return per_frame(segment, centres, f0, exponents, reach, sample_rate, fft_size,
                   [&](const FrameArgs& a, double* rows, int bins) {
    thread_local std::unique_ptr<EnvelopeWork> kept;   // see `kept` in d4c()
    if (!kept || kept->fft.size() != fft_size) kept = std::make_unique<EnvelopeWork>(fft_size);
    EnvelopeWork& work = *kept;
    const double lowest = 3.0 * sample_rate / (fft_size - 3.0);  // three periods fill the FFT
    for (py::ssize_t i = 0; i < a.frames; ++i) {
      const double f = a.f0[i] <= lowest ? kUnvoicedF0 : a.f0[i];
      double* row = rows + i * bins;
      envelope_frame(reach_of(a, i, reach), f, sample_rate, work, row);
      const double gain = std::ldexp(1.0, 2 * a.exponents[i]);
      if (gain != 1.0)
        for (int k = 0; k < bins; ++k) row[k] *= gain;
    }
  });
}

py::array_t<double> d4c(const Samples& segment, const Indices& centres, const Samples& f0, const Exponents& exponents,
                        std::int64_t reach, int sample_rate, int fft_size) {
  return per_frame(segment, centres, f0, exponents, reach, sample_rate, fft_size,
                   [&](const FrameArgs& a, double* rows, int bins) {
    const int n = 1 << (1 + static_cast<int>(std::log2(4.0 * sample_rate / kD4CFloorF0 + 1.0)));
    // The work space of this thread's last call, kept for the next with the same sizes: a live
    // stream calls once per 10 ms chunk, and the FFT tables and guard noise cost more to make than
    // the two frames it analyses.
    thread_local std::unique_ptr<AperiodicityWork> kept;
    if (!kept || kept->fft.size() != n || kept->sample_rate != sample_rate || kept->out_bins != bins)
      kept = std::make_unique<AperiodicityWork>(n, sample_rate, bins, static_cast<double>(sample_rate) / fft_size);
    AperiodicityWork& work = *kept;
    for (py::ssize_t i = 0; i < a.frames; ++i) {
      double* row = rows + i * bins;
      if (a.f0[i] == 0.0) {
        std::fill(row, row + bins, kUnvoicedAperiodicity);
        continue;
      }
      aperiodicity_frame(reach_of(a, i, reach), a.f0[i], sample_rate, work, row, bins);
    }
  });
}

// YIN (de Cheveigne and Kawahara 2002) on each row of `frames`: the difference function over
// every pair inside the window divided by the number of pairs, its cumulative-mean normalisation,
// the first dip below `threshold` (else the global minimum), a check of the lag's multiples (a
// strong upper harmonic can dip at a fraction of the period), parabolic interpolation. The
// Python face and the full description: engine/features/pitch.py (yin_frames).
py::tuple yin(const py::array_t<double, py::array::c_style | py::array::forcecast>& frames, int sample_rate,
              int min_lag, int max_lag, double threshold, double voicing_threshold, double silence_db) {
  if (frames.ndim() != 2) throw std::invalid_argument("frames must be 2-D (frames, window)");
  const py::ssize_t count = frames.shape(0);
  const int length = static_cast<int>(frames.shape(1));
  if (min_lag < 2 || max_lag <= min_lag || length < max_lag + 2)
    throw std::invalid_argument("need 2 <= min_lag < max_lag and a window of at least max_lag + 2 samples");
  py::array_t<double> f0_out(count), periodicity_out(count);
  const double* all = frames.data();
  double* f0 = f0_out.mutable_data();
  double* periodicity = periodicity_out.mutable_data();
  {
    py::gil_scoped_release release;
    int nfft = 4;
    while (nfft < 2 * length) nfft <<= 1;
    thread_local std::unique_ptr<RealFFT> kept;   // see `kept` in d4c()
    if (!kept || kept->size() != nfft) kept = std::make_unique<RealFFT>(nfft);
    RealFFT& fft = *kept;
    const int bins = nfft / 2 + 1;
    std::vector<double> wave(nfft, 0.0), re(bins), im(bins), acf(nfft), power(length + 1), cmnd(max_lag + 2);
    for (py::ssize_t f = 0; f < count; ++f) {
      const double* x = all + f * length;
      std::copy(x, x + length, wave.begin());
      fft.forward(wave.data(), re.data(), im.data());
      for (int k = 0; k < bins; ++k) {
        re[k] = re[k] * re[k] + im[k] * im[k];
        im[k] = 0.0;
      }
      fft.inverse(re.data(), im.data(), acf.data());
      power[0] = 0.0;
      for (int i = 0; i < length; ++i) power[i + 1] = power[i] + x[i] * x[i];
      // cumulative mean normalised difference; index max_lag + 1 stands for "aperiodic"
      cmnd[0] = 1.0;
      double running = 0.0;
      for (int lag = 1; lag <= max_lag; ++lag) {
        const double head = power[length - lag], tail = power[length] - power[lag];
        const double d = std::max(head + tail - 2.0 * acf[lag] / nfft, 0.0) / (length - lag);
        running += d;
        cmnd[lag] = running > 0.0 ? d * lag / running : 1.0;
      }
      cmnd[max_lag + 1] = 1.0;
      // the first run of lags below the threshold, and its minimum; else the global minimum
      int best = -1;
      for (int lag = min_lag; lag <= max_lag; ++lag) {
        if (cmnd[lag] < threshold) {
          best = lag;
          for (int next = lag + 1; next <= max_lag && cmnd[next] < threshold; ++next)
            if (cmnd[next] < cmnd[best]) best = next;
          break;
        }
      }
      if (best < 0) {
        best = min_lag;
        for (int lag = min_lag + 1; lag <= max_lag; ++lag)
          if (cmnd[lag] < cmnd[best]) best = lag;
      }
      // A multiple of the lag much more periodic than the lag: the lag was a harmonic (a singer's
      // formant, a pharyngeal voice). The lowest such multiple is taken, never the most periodic one:
      // a true period's multiples are periods too, and the most periodic is as often an octave below
      // (a voice with a faint subharmonic repeats better over two periods than over one). Each is
      // searched within +-m/2 samples of m * lag (the integer lag's rounding, m times over) and
      // followed down to its own minimum; from there again, while the lag is not clearly periodic.
      // "Much more": under half. A lag already under 0.05 moves only where its double is no better
      // (over 0.7 of it: a dominant third or fourth harmonic repeats as well over two of its
      // periods as over one) and its third or fourth multiple is under a quarter of it; a true
      // period's double is better (the normalisation divides by the mean over more lags).
      int lag = best;
      const auto near_multiple = [&](int m, int of) {
        const int reach = (m + 1) / 2, lo = m * of - reach, hi = m * of + reach;
        if (hi > max_lag - 1) return -1;
        int near = lo;
        for (int d = lo + 1; d <= hi; ++d)
          if (cmnd[d] < cmnd[near]) near = d;
        return near;
      };
      for (int round = 0; round < 3 && cmnd[lag] > 0.01; ++round) {
        const double at = cmnd[lag];
        const int twice = near_multiple(2, lag);
        const bool clear = at <= 0.05;
        if (clear && (twice < 0 || cmnd[twice] < 0.7 * at)) break;
        int found = -1;
        for (int m = clear ? 3 : 2; m <= 4 && found < 0; ++m) {
          const int near = near_multiple(m, lag);
          if (near < 0) break;
          if (cmnd[near] < (clear ? 0.25 : 0.5) * at) found = near;
        }
        if (found < 0) break;
        while (found > min_lag && cmnd[found - 1] < cmnd[found]) --found;
        while (found < max_lag - 1 && cmnd[found + 1] < cmnd[found]) ++found;
        lag = found;
      }
      const double left = cmnd[lag - 1], mid = cmnd[lag], right = cmnd[lag + 1];
      const double denom = left - 2.0 * mid + right;
      double shift = std::fabs(denom) > 1e-12 ? 0.5 * (left - right) / denom : 0.0;
      shift = std::min(std::max(shift, -0.5), 0.5);
      if (!(lag > min_lag && lag < max_lag)) shift = 0.0;
      const double level_db = 20.0 * std::log10(std::sqrt(power[length] / length) + 1e-12);
      // a minimum at the longest lag is the edge of the search, not a period
      const bool voiced = mid < voicing_threshold && level_db > silence_db && lag < max_lag;
      f0[f] = voiced ? sample_rate / (lag + shift) : 0.0;
      periodicity[f] = 1.0 - std::min(std::max(mid, 0.0), 1.0);
    }
  }
  return py::make_tuple(f0_out, periodicity_out);
}

// Each voiced row's F0 refined from the instantaneous frequency of its first harmonics (the
// spectrum's phase derivative: the frequency reassigned by a window and its derivative), on a
// Blackman window three periods long centred on the row. Each harmonic k under `max_hz` (at most
// `harmonics` of them) reads k F0 at its own frequency; a reading further than `harmonic_tolerance`
// from k F0 is left out, the rest are averaged weighted by power, and the average replaces the F0
// where it lies within `max_move` of it (a window sized for a guess an octave high does not resolve
// the fundamental, which drags its reading part of the way down: not taken); then again from there
// (`passes` times in all: after a large move the harmonics are read where they are, on a window of
// the new period). Rows whose three periods do not fit the window (an F0 under 3 sample_rate /
// length) keep their F0. The Python face and what it is for: engine/features/pitch.py (refine_f0).
py::array_t<double> refine_f0(const py::array_t<double, py::array::c_style | py::array::forcecast>& frames,
                              const Samples& f0_in, int sample_rate, int harmonics, double max_hz,
                              double harmonic_tolerance, double max_move, int passes) {
  if (frames.ndim() != 2) throw std::invalid_argument("frames must be 2-D (frames, window)");
  const py::ssize_t count = frames.shape(0);
  const int length = static_cast<int>(frames.shape(1));
  if (f0_in.ndim() != 1 || f0_in.shape(0) != count) throw std::invalid_argument("need one F0 per row of frames");
  if (harmonics < 1 || sample_rate <= 0 || passes < 1)
    throw std::invalid_argument("need harmonics >= 1, sample_rate > 0 and passes >= 1");
  py::array_t<double> out(count);
  const double* all = frames.data();
  const double* f0 = f0_in.data();
  double* refined = out.mutable_data();
  {
    py::gil_scoped_release release;
    const int centre = length / 2;
    const int most = std::min(centre, length - 1 - centre);
    // windows by half-length, kept between calls (live calls carry two or three frames each)
    thread_local std::vector<std::vector<double>> windows, slopes;
    if (windows.size() < static_cast<std::size_t>(most + 1)) {
      windows.resize(most + 1);
      slopes.resize(most + 1);
    }
    // the power-weighted reading of row `row` around `guess` (0: none fits)
    const auto read = [&](py::ssize_t row, double guess) {
      const int half = static_cast<int>(std::lround(1.5 * sample_rate / guess));
      if (half > most || half < 2) return 0.0;
      // Blackman window over n = -half..half and its derivative per sample, made once per length
      std::vector<double>& window = windows[half];
      std::vector<double>& slope = slopes[half];
      if (window.empty()) {
        window.resize(2 * half + 1);
        slope.resize(2 * half + 1);
        const double step = kPi / half;
        for (int i = 0; i <= 2 * half; ++i) {
          const double a = step * i;
          window[i] = 0.42 - 0.5 * std::cos(a) + 0.08 * std::cos(2.0 * a);
          slope[i] = (0.5 * std::sin(a) - 0.16 * std::sin(2.0 * a)) * step;
        }
      }
      const double* x = all + row * length + centre - half;
      const int top = std::max(1, std::min(harmonics, static_cast<int>(max_hz / guess)));
      double sum = 0.0, weight = 0.0;
      for (int k = 1; k <= top; ++k) {
        const double omega = 2.0 * kPi * k * guess / sample_rate;
        // sums over n of x(n) w(n) e^{-j omega n} and the same with w's derivative, n from -half
        double xr = 0.0, xi = 0.0, dr = 0.0, di = 0.0;
        const double cr = std::cos(omega), ci = -std::sin(omega);
        double pr = std::cos(omega * half), pi = std::sin(omega * half);   // e^{-j omega (-half)}
        for (int i = 0; i <= 2 * half; ++i) {
          const double a = x[i] * window[i], b = x[i] * slope[i];
          xr += a * pr; xi += a * pi;
          dr += b * pr; di += b * pi;
          const double nr = pr * cr - pi * ci;
          pi = pr * ci + pi * cr;
          pr = nr;
        }
        const double power = xr * xr + xi * xi;
        if (!(power > 0.0)) continue;
        // the reassigned frequency: omega - Im(D conj(X)) / |X|^2
        const double instant = omega - (di * xr - dr * xi) / power;
        const double reading = instant * sample_rate / (2.0 * kPi * k);
        if (std::fabs(reading / guess - 1.0) > harmonic_tolerance) continue;
        sum += power * reading;
        weight += power;
      }
      return weight > 0.0 ? sum / weight : 0.0;
    };
    for (py::ssize_t f = 0; f < count; ++f) {
      double value = f0[f];
      for (int pass = 0; pass < passes && value > 0.0; ++pass) {
        const double next = read(f, value);
        if (!(next > 0.0) || std::fabs(next / value - 1.0) > max_move) break;
        value = next;
      }
      refined[f] = value;
    }
  }
  return out;
}

// A fourth-order Butterworth high-pass whose cut-off may change at every sample: two second-order
// state-variable sections (trapezoidal integrators, after Simper's "linear trapezoidal" SVF), whose
// state is the integrators' and so stays meaningful when the coefficients move (a direct-form
// biquad's does not: switched between the same cut-offs it overshoots more). The cut-off given is
// followed through a one-pole smoother of `smooth_ms`, so a cut-off that steps from frame to frame
// glides instead: a 1 kHz tone under a cut-off that jumps 3 semitones overshoots 11% unsmoothed,
// 0.6% at 5 ms. `state` (5 values: four integrators and the smoothed cut-off, 0 = not yet started)
// carries all of it from one call to the next, so a signal filtered in pieces equals the whole.
py::array_t<double> tracking_highpass(const Samples& x, const Samples& cutoff_hz, double sample_rate,
                                      py::array_t<double, py::array::c_style> state, double smooth_ms) {
  const py::ssize_t n = x.shape(0);
  if (x.ndim() != 1 || cutoff_hz.ndim() != 1 || cutoff_hz.shape(0) != n)
    throw std::invalid_argument("tracking_highpass needs 1-D samples and one cut-off per sample");
  if (!(sample_rate > 0.0)) throw std::invalid_argument("sample_rate must be > 0 Hz");
  if (!(smooth_ms >= 0.0)) throw std::invalid_argument("smooth_ms must be >= 0 ms");
  if (state.ndim() != 1 || state.shape(0) != 5) throw std::invalid_argument("state must hold 5 values");
  py::array_t<double> out(n);
  const double* in = x.data();
  const double* fc = cutoff_hz.data();
  double* y = out.mutable_data();
  double* z = state.mutable_data();
  {
    py::gil_scoped_release release;
    // 1 / Q of the two sections of a fourth-order Butterworth: 2 cos(pi / 8), 2 cos(3 pi / 8)
    const double damping[2] = {2.0 * std::cos(kPi / 8.0), 2.0 * std::cos(3.0 * kPi / 8.0)};
    const double follow = smooth_ms > 0.0 ? 1.0 - std::exp(-1000.0 / (smooth_ms * sample_rate)) : 1.0;
    const double top = 0.45 * sample_rate;
    double& glide = z[4];
    double last = -1.0, a1[2] = {0, 0}, a2[2] = {0, 0}, a3[2] = {0, 0};
    for (py::ssize_t i = 0; i < n; ++i) {
      const double target = std::min(std::max(fc[i], 1.0), top);
      glide = glide > 0.0 ? glide + (target - glide) * follow : target;
      if (glide != last) {
        last = glide;
        const double g = std::tan(kPi * glide / sample_rate);
        for (int s = 0; s < 2; ++s) {
          a1[s] = 1.0 / (1.0 + g * (g + damping[s]));
          a2[s] = g * a1[s];
          a3[s] = g * a2[s];
        }
      }
      double v = in[i];
      for (int s = 0; s < 2; ++s) {
        double& ic1 = z[2 * s];
        double& ic2 = z[2 * s + 1];
        const double v3 = v - ic2;
        const double v1 = a1[s] * ic1 + a2[s] * v3;
        const double v2 = ic2 + a2[s] * ic1 + a3[s] * v3;
        ic1 = 2.0 * v1 - ic1;
        ic2 = 2.0 * v2 - ic2;
        v = v - damping[s] * v1 - v2;
      }
      y[i] = v;
    }
  }
  return out;
}

py::tuple rfft(const Samples& x) {
  const py::ssize_t n = x.shape(0);
  if (x.ndim() != 1 || n < 4 || (n & (n - 1))) throw std::invalid_argument("rfft needs a power-of-two length >= 4");
  RealFFT fft(static_cast<int>(n));
  py::array_t<double> re(n / 2 + 1), im(n / 2 + 1);
  fft.forward(x.data(), re.mutable_data(), im.mutable_data());
  return py::make_tuple(re, im);
}

py::array_t<double> irfft(const Samples& re, const Samples& im) {
  const py::ssize_t n = 2 * (re.shape(0) - 1);
  if (re.ndim() != 1 || im.ndim() != 1 || re.shape(0) != im.shape(0) || n < 4 || (n & (n - 1)))
    throw std::invalid_argument("irfft needs n/2 + 1 bins, n a power of two >= 4");
  RealFFT fft(static_cast<int>(n));
  py::array_t<double> x(n);
  fft.inverse(re.data(), im.data(), x.mutable_data());
  return x;
}

// `count` forward and inverse transforms of x with one set of tables (as the analysis runs them),
// for benchmarks: the transforms' own time, not the tables'. Returns the last inverse / n.
py::array_t<double> fft_round_trips(const Samples& x, int count) {
  const py::ssize_t n = x.shape(0);
  if (x.ndim() != 1 || n < 4 || (n & (n - 1))) throw std::invalid_argument("fft_round_trips needs a power-of-two length >= 4");
  if (count < 1) throw std::invalid_argument("count " + std::to_string(count) + " must be >= 1");
  RealFFT fft(static_cast<int>(n));
  py::array_t<double> y(n);
  double* out = y.mutable_data();
  std::vector<double> re(n / 2 + 1), im(n / 2 + 1);
  {
    py::gil_scoped_release release;
    for (int k = 0; k < count; ++k) {
      fft.forward(x.data(), re.data(), im.data());
      fft.inverse(re.data(), im.data(), out);
    }
    for (py::ssize_t i = 0; i < n; ++i) out[i] /= static_cast<double>(n);
  }
  return y;
}

}  // namespace

PYBIND11_MODULE(_spectral, m) {
  m.doc() = "CheapTrick envelopes and D4C aperiodicity, frame by frame (see engine/features/world.py), YIN, and a tracking high-pass";
  m.def("cheaptrick", &cheaptrick, py::arg("segment"), py::arg("centres"), py::arg("f0"), py::arg("exponents"),
        py::arg("reach"), py::arg("sample_rate"), py::arg("fft_size"),
        "Power envelopes (frames, fft_size // 2 + 1) of the frames centred at `centres`.");
  m.def("d4c", &d4c, py::arg("segment"), py::arg("centres"), py::arg("f0"), py::arg("exponents"), py::arg("reach"),
        py::arg("sample_rate"), py::arg("fft_size"),
        "Aperiodicity (frames, fft_size // 2 + 1), 0..1; 1 - 1e-12 where f0 is 0.");
  m.def("yin", &yin, py::arg("frames"), py::arg("sample_rate"), py::arg("min_lag"), py::arg("max_lag"),
        py::arg("threshold"), py::arg("voicing_threshold"), py::arg("silence_db"),
        "F0 (0 where unvoiced) and periodicity of each row of `frames` (see pitch.yin_frames).");
  m.def("refine_f0", &refine_f0, py::arg("frames"), py::arg("f0"), py::arg("sample_rate"), py::arg("harmonics"),
        py::arg("max_hz"), py::arg("harmonic_tolerance"), py::arg("max_move"), py::arg("passes"), "Each voiced row's F0 refined from its harmonics' instantaneous frequency (see pitch.refine_f0).");
  m.def("tracking_highpass", &tracking_highpass, py::arg("samples"), py::arg("cutoff_hz"), py::arg("sample_rate"),
        py::arg("state"), py::arg("smooth_ms") = 5.0,
        "Fourth-order Butterworth high-pass with a cut-off per sample, followed through a one-pole smoother of "
        "smooth_ms; `state` (5 values, zeros to start) is updated in place.");
  m.def("rfft", &rfft, py::arg("x"), "The real FFT used inside, for tests: (re, im).");
  m.def("irfft", &irfft, py::arg("re"), py::arg("im"), "Its unnormalised inverse, for tests.");
  m.def("fft_round_trips", &fft_round_trips, py::arg("x"), py::arg("count"),
        "`count` forward and inverse transforms with one set of tables, for benchmarks; the last inverse / n.");
}
