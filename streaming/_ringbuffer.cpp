// voxflip.streaming._ringbuffer: a lock-free single-producer/single-consumer ring of mono float32
// samples for the live audio path. The Python face, with the full description of the semantics and
// of who may call what from which thread, is streaming/ring_buffer.py.
//
// Design:
//  * Two monotonically increasing 64-bit indices. The producer alone stores write_index_, the consumer
//    alone stores read_index_; each loads the other's index with acquire and publishes its own with
//    release, so the samples copied before a publish are visible to the other side after its load.
//    available = write - read, free = capacity - available; 64-bit counters never wrap in practice.
//  * Storage is the next power of two >= capacity (slot = index & mask) and is allocated and zeroed
//    once in the constructor, so the audio thread never allocates and never page-faults on first use.
//  * Buffers are taken through the raw buffer protocol (no pybind11 buffer_info, whose shape/stride
//    vectors would allocate): float32 and C-contiguous are required, nothing is ever converted.
//  * All argument checks happen with the GIL held. Copies of at least kGilReleaseMinSamples samples
//    then run with the GIL released (the Py_buffer export keeps the caller's memory alive and in
//    place meanwhile). Smaller copies keep it: they take microseconds, and a thread that gives the
//    GIL away while another thread runs Python waits for the switch interval (5 ms) or longer to
//    get it back. Measured on 2 cores, a callback-sized write + read_into (480 stereo frames every
//    1 ms) against a worker running Python: releasing on every call stalled 0-3% of the calls for
//    4-320 ms; keeping the GIL, none took over 2 ms.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>

namespace py = pybind11;

namespace {

constexpr std::uint64_t kMaxCapacity = std::uint64_t{1} << 40;  // samples; keeps the rounding exact
constexpr std::size_t kGilReleaseMinSamples = std::size_t{1} << 16;  // 256 KiB: ~25 us of copying

// Releases the GIL for the rest of the enclosing scope when a copy touches `samples` samples or more.
class ReleaseGilIfLarge {
 public:
  explicit ReleaseGilIfLarge(std::size_t samples) {
    if (samples >= kGilReleaseMinSamples) release_.emplace();
  }

 private:
  std::optional<py::gil_scoped_release> release_;
};

// One buffer export, released when this goes out of scope (which must be with the GIL held).
class BufferExport {
 public:
  BufferExport() = default;
  BufferExport(const BufferExport&) = delete;
  BufferExport& operator=(const BufferExport&) = delete;
  ~BufferExport() {
    if (held_) PyBuffer_Release(&view_);
  }

  void acquire(PyObject* obj) {
    // Strides and format, read-only allowed: our own checks below then give the error messages.
    if (PyObject_GetBuffer(obj, &view_, PyBUF_RECORDS_RO) != 0) throw py::error_already_set();
    held_ = true;
  }
  const Py_buffer& view() const { return view_; }

 private:
  Py_buffer view_{};
  bool held_ = false;
};

bool is_native_float32(const Py_buffer& view) {
  if (view.itemsize != 4 || view.format == nullptr) return false;
  const std::string fmt(view.format);
  if (fmt == "f" || fmt == "@f" || fmt == "=f") return true;
  const std::uint16_t one = 1;
  unsigned char low_byte = 0;
  std::memcpy(&low_byte, &one, 1);
  return fmt == (low_byte == 1 ? "<f" : ">f");  // an explicit byte order is fine when it is ours
}

std::string describe_dtype(py::handle obj, const Py_buffer* view) {
  if (py::hasattr(obj, "dtype")) return "dtype " + py::str(obj.attr("dtype")).cast<std::string>();
  if (view != nullptr) {
    return std::string("buffer format '") + (view->format ? view->format : "B") + "'";
  }
  return "a " + py::str(py::type::handle_of(obj).attr("__name__")).cast<std::string>() +
         " (no buffer protocol)";
}

std::string shape_text(const Py_buffer& view) {
  std::string text = "(";
  for (int i = 0; i < view.ndim; ++i) {
    if (i) text += ", ";
    text += std::to_string(view.shape[i]);
  }
  return text + (view.ndim == 1 ? ",)" : ")");
}

// A float32 block taken from a caller's buffer: where it starts and how many frames it holds.
struct Block {
  float* data;
  std::size_t frames;
};

void check_channels(py::ssize_t channels) {
  if (channels < 1) {
    throw py::value_error("channels must be >= 1 (interleaved channels per frame), got " +
                          std::to_string(channels));
  }
}

// Checks `obj` (the argument called `name`) and exports its buffer into `holder`. Needs the GIL.
Block take_block(py::handle obj, const char* name, py::ssize_t channels, bool writable,
                 BufferExport& holder) {
  check_channels(channels);
  const std::string what =
      std::string(name) + (writable ? " must be a writable C-contiguous float32 array, got "
                                    : " must be a C-contiguous float32 array, got ");
  if (!PyObject_CheckBuffer(obj.ptr())) throw py::type_error(what + describe_dtype(obj, nullptr));
  holder.acquire(obj.ptr());
  const Py_buffer& view = holder.view();
  if (!is_native_float32(view)) throw py::type_error(what + describe_dtype(obj, &view));
  if (!PyBuffer_IsContiguous(&view, 'C')) {
    throw py::type_error(what + "a non-contiguous float32 array of shape " + shape_text(view) +
                         "; pass numpy.ascontiguousarray(" + name + ")");
  }
  if (writable && view.readonly) throw py::type_error(what + "a read-only buffer");
  // Interleaved frames are (frames, channels). Refuse other 2-D+ layouts, a planar
  // (channels, samples) array above all, instead of silently mixing neighbouring samples.
  if (view.ndim >= 2) {
    int non_unit_dims = 0;
    for (int i = 0; i < view.ndim; ++i) non_unit_dims += view.shape[i] > 1;
    const bool frames_last_axis_channels = view.shape[view.ndim - 1] == channels;
    if (!frames_last_axis_channels && !(channels == 1 && non_unit_dims <= 1)) {
      throw py::value_error(std::string(name) + " has shape " + shape_text(view) +
                            " but interleaved audio must be 1-D or (frames, channels) with channels=" +
                            std::to_string(channels) +
                            " last; for a (channels, samples) array pass numpy.ascontiguousarray(" +
                            name + ".T)");
    }
  }
  const auto samples = static_cast<std::size_t>(view.len / view.itemsize);
  const auto ch = static_cast<std::size_t>(channels);
  if (samples % ch != 0) {
    throw py::value_error(std::string(name) + " holds " + std::to_string(samples) +
                          " samples, which is not a whole number of frames of channels=" +
                          std::to_string(channels) + "; its length must be a multiple of channels");
  }
  return Block{static_cast<float*>(view.buf), samples / ch};
}

std::size_t checked_count(py::ssize_t n, const char* name) {
  if (n < 0) throw py::value_error(std::string(name) + " must be >= 0 samples, got " + std::to_string(n));
  return static_cast<std::size_t>(n);
}

class RingBuffer {
 public:
  explicit RingBuffer(py::ssize_t capacity) {
    if (capacity <= 0 || static_cast<std::uint64_t>(capacity) > kMaxCapacity) {
      throw py::value_error("capacity must be > 0 and <= 2**40 samples, got " + std::to_string(capacity));
    }
    capacity_ = static_cast<std::size_t>(capacity);
    std::size_t slots = 1;
    while (slots < capacity_) slots <<= 1;
    mask_ = slots - 1;
    storage_.reset(new float[slots]());  // zeroed: every page is touched now, not in the callback
  }

  std::size_t capacity() const { return capacity_; }

  // Samples readable now; exact for the consumer, a lower bound for the producer.
  std::size_t available() const {
    const std::uint64_t r = read_index_.load(std::memory_order_acquire);  // first: r <= w always
    const std::uint64_t w = write_index_.load(std::memory_order_acquire);
    return static_cast<std::size_t>(std::min<std::uint64_t>(w - r, capacity_));
  }

  // Samples writable now; exact for the producer, a lower bound for the consumer.
  std::size_t free() const { return capacity_ - available(); }

  // Producer side.
  std::size_t write(py::handle samples, py::ssize_t channels) {
    BufferExport holder;
    const Block block = take_block(samples, "samples", channels, /*writable=*/false, holder);
    const auto ch = static_cast<std::size_t>(channels);
    ReleaseGilIfLarge no_gil(block.frames * ch);
    const std::uint64_t w = write_index_.load(std::memory_order_relaxed);
    const std::uint64_t r = read_index_.load(std::memory_order_acquire);
    const std::size_t room = capacity_ - static_cast<std::size_t>(w - r);
    const std::size_t frames = std::min(block.frames, room);
    if (ch == 1) {
      copy_in(w, block.data, frames);
    } else {
      mix_in(w, block.data, frames, ch);
    }
    write_index_.store(w + frames, std::memory_order_release);
    if (frames < block.frames) {
      overruns_.fetch_add(1, std::memory_order_relaxed);
      dropped_samples_.fetch_add(block.frames - frames, std::memory_order_relaxed);
    }
    return frames;
  }

  // Consumer side.
  py::array_t<float> read(py::ssize_t n) {
    const std::size_t wanted = checked_count(n, "n");
    const std::uint64_t r = read_index_.load(std::memory_order_relaxed);
    const std::uint64_t w = write_index_.load(std::memory_order_acquire);
    const std::size_t count = std::min<std::size_t>(wanted, static_cast<std::size_t>(w - r));
    py::array_t<float> out(static_cast<py::ssize_t>(count));
    float* dst = out.mutable_data();
    {
      ReleaseGilIfLarge no_gil(count);
      copy_out(r, dst, count);
      read_index_.store(r + count, std::memory_order_release);
    }
    return out;
  }

  std::size_t read_into(py::handle out, py::ssize_t channels, float fill) {
    BufferExport holder;
    const Block block = take_block(out, "out", channels, /*writable=*/true, holder);
    const auto ch = static_cast<std::size_t>(channels);
    ReleaseGilIfLarge no_gil(block.frames * ch);
    const std::uint64_t r = read_index_.load(std::memory_order_relaxed);
    const std::uint64_t w = write_index_.load(std::memory_order_acquire);
    const std::size_t frames = std::min<std::size_t>(block.frames, static_cast<std::size_t>(w - r));
    if (ch == 1) {
      copy_out(r, block.data, frames);
    } else {
      spread_out(r, block.data, frames, ch);
    }
    read_index_.store(r + frames, std::memory_order_release);
    if (frames < block.frames) {
      std::fill(block.data + frames * ch, block.data + block.frames * ch, fill);
      underruns_.fetch_add(1, std::memory_order_relaxed);
      missing_samples_.fetch_add(block.frames - frames, std::memory_order_relaxed);
    }
    return frames;
  }

  py::array_t<float> peek(py::ssize_t n, py::ssize_t offset) {
    const std::size_t count = checked_count(n, "n");
    const std::size_t skip = checked_count(offset, "offset");
    const std::uint64_t r = read_index_.load(std::memory_order_relaxed);
    const std::uint64_t w = write_index_.load(std::memory_order_acquire);
    const std::uint64_t have = w - r;
    if (static_cast<std::uint64_t>(count) + skip > have) {
      throw py::value_error("peek(n=" + std::to_string(count) + ", offset=" + std::to_string(skip) +
                            ") needs " + std::to_string(count + skip) + " samples but only " +
                            std::to_string(have) + " are available; check .available first");
    }
    py::array_t<float> out(static_cast<py::ssize_t>(count));
    float* dst = out.mutable_data();
    {
      ReleaseGilIfLarge no_gil(count);
      copy_out(r + skip, dst, count);
    }
    return out;
  }

  std::size_t skip(py::ssize_t n) {
    const std::size_t wanted = checked_count(n, "n");
    const std::uint64_t r = read_index_.load(std::memory_order_relaxed);
    const std::uint64_t w = write_index_.load(std::memory_order_acquire);
    const std::size_t count = std::min<std::size_t>(wanted, static_cast<std::size_t>(w - r));
    read_index_.store(r + count, std::memory_order_release);
    return count;
  }

  // Only when neither thread is using the ring.
  void reset() {
    read_index_.store(0, std::memory_order_relaxed);
    write_index_.store(0, std::memory_order_relaxed);
    overruns_.store(0, std::memory_order_relaxed);
    dropped_samples_.store(0, std::memory_order_relaxed);
    underruns_.store(0, std::memory_order_relaxed);
    missing_samples_.store(0, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }

  std::uint64_t overruns() const { return overruns_.load(std::memory_order_relaxed); }
  std::uint64_t dropped_samples() const { return dropped_samples_.load(std::memory_order_relaxed); }
  std::uint64_t underruns() const { return underruns_.load(std::memory_order_relaxed); }
  std::uint64_t missing_samples() const { return missing_samples_.load(std::memory_order_relaxed); }

 private:
  // Calls fn(slot_pointer, position_in_run, length) for the one or two contiguous runs of slots
  // that `count` samples starting at `index` occupy.
  template <typename Fn>
  void for_each_run(std::uint64_t index, std::size_t count, Fn fn) const {
    const std::size_t start = static_cast<std::size_t>(index & mask_);
    const std::size_t first = std::min(count, mask_ + 1 - start);
    if (first) fn(storage_.get() + start, std::size_t{0}, first);
    if (count > first) fn(storage_.get(), first, count - first);
  }

  void copy_in(std::uint64_t index, const float* src, std::size_t count) {
    for_each_run(index, count, [src](float* slots, std::size_t at, std::size_t len) {
      std::memcpy(slots, src + at, len * sizeof(float));
    });
  }

  void mix_in(std::uint64_t index, const float* src, std::size_t frames, std::size_t channels) {
    const auto divisor = static_cast<float>(channels);
    for_each_run(index, frames, [=](float* slots, std::size_t at, std::size_t len) {
      const float* frame = src + at * channels;
      for (std::size_t i = 0; i < len; ++i, frame += channels) {
        float sum = frame[0];
        for (std::size_t c = 1; c < channels; ++c) sum += frame[c];
        slots[i] = sum / divisor;
      }
    });
  }

  void copy_out(std::uint64_t index, float* dst, std::size_t count) const {
    for_each_run(index, count, [dst](float* slots, std::size_t at, std::size_t len) {
      std::memcpy(dst + at, slots, len * sizeof(float));
    });
  }

  void spread_out(std::uint64_t index, float* dst, std::size_t frames, std::size_t channels) const {
    for_each_run(index, frames, [=](float* slots, std::size_t at, std::size_t len) {
      float* frame = dst + at * channels;
      for (std::size_t i = 0; i < len; ++i, frame += channels) std::fill(frame, frame + channels, slots[i]);
    });
  }

  std::size_t capacity_ = 0;
  std::size_t mask_ = 0;
  std::unique_ptr<float[]> storage_;
  // Producer-owned, then consumer-owned, on separate cache lines so the two threads do not
  // invalidate each other's line on every store.
  alignas(64) std::atomic<std::uint64_t> write_index_{0};
  std::atomic<std::uint64_t> overruns_{0};
  std::atomic<std::uint64_t> dropped_samples_{0};
  alignas(64) std::atomic<std::uint64_t> read_index_{0};
  std::atomic<std::uint64_t> underruns_{0};
  std::atomic<std::uint64_t> missing_samples_{0};
};

}  // namespace

PYBIND11_MODULE(_ringbuffer, m) {
  m.doc() = "Lock-free SPSC float32 ring buffer for the live audio path (see voxflip.streaming.ring_buffer).";
  m.attr("GIL_RELEASE_MIN_SAMPLES") = kGilReleaseMinSamples;

  py::class_<RingBuffer>(m, "RingBuffer",
                         "Fixed-size single-producer/single-consumer ring of mono float32 samples.")
      .def(py::init<py::ssize_t>(), py::arg("capacity"),
           "Preallocate a ring holding up to `capacity` mono samples (> 0).")
      .def_property_readonly("capacity", &RingBuffer::capacity, "Samples it can hold (as asked).")
      .def_property_readonly("available", &RingBuffer::available, "Samples readable now.")
      .def_property_readonly("free", &RingBuffer::free, "Samples writable now.")
      .def_property_readonly("overruns", &RingBuffer::overruns, "write() calls that did not fit.")
      .def_property_readonly("dropped_samples", &RingBuffer::dropped_samples,
                             "Frames write() could not store, in total.")
      .def_property_readonly("underruns", &RingBuffer::underruns, "read_into() calls that ran short.")
      .def_property_readonly("missing_samples", &RingBuffer::missing_samples,
                             "Frames read_into() filled with `fill`, in total.")
      .def("write", &RingBuffer::write, py::arg("samples"), py::arg("channels") = 1,
           "Producer: store the interleaved float32 frames of `samples` (each averaged to one mono sample\n"
           "when channels > 1) as far as they fit; return the mono samples written. Never blocks or\n"
           "allocates; the GIL is released while copying GIL_RELEASE_MIN_SAMPLES samples or more.")
      .def("read", &RingBuffer::read, py::arg("n"),
           "Consumer: pop up to `n` samples into a new float32 array.")
      .def("read_into", &RingBuffer::read_into, py::arg("out"), py::arg("channels") = 1,
           py::arg("fill") = 0.0f,
           "Consumer: fill the writable float32 buffer `out` (interleaved frames) with the next samples,\n"
           "each copied to all channels, padding with `fill`; return the frames taken. Never blocks or\n"
           "allocates; the GIL is released while copying GIL_RELEASE_MIN_SAMPLES samples or more.")
      .def("peek", &RingBuffer::peek, py::arg("n"), py::arg("offset") = 0,
           "Consumer: copy `n` samples starting `offset` after the read position, without consuming.")
      .def("skip", &RingBuffer::skip, py::arg("n"), "Consumer: drop up to `n` samples; return how many.")
      .def("reset", &RingBuffer::reset,
           "Empty the ring and zero the counters. Only while neither thread is using it.")
      .def("__repr__", [](const RingBuffer& rb) {
        return "RingBuffer(capacity=" + std::to_string(rb.capacity()) +
               ", available=" + std::to_string(rb.available()) + ")";
      });
}
