// The packed int4 access expression W(k, n) dequantizes exactly as QuantizedWeight::value() does,
// for every quantization form, on odd shapes with ragged panels and blocks.
#include <catch2/catch.hpp>

#include <cstring>

#include "dsl/int4.h"
#include "dsl/target.h"
#include "qmatmul_reference.h"

using namespace tetra;
using namespace tetra::dsl;
using tetra::test::Granularity;
using tetra::test::WeightSpec;

namespace {

// Realizes W(k, n) over [0, K) x [0, N) through the packed panels, vectorised over the panel.
Halide::Buffer<float> dequantize(const PackedInt4Buffers& packed, const Halide::Target& target = host_target().halide) {
  const int panel = packed.layout.panel;
  PackedInt4 W("W", packed.format, packed.layout);
  Halide::Func f("f");
  Halide::Var j("j"), k("k"), p("p");
  f(j, k, p) = W.panel(j, k, p);
  f.vectorize(j, std::min(panel, 16)).unroll(k, 2);
  f.output_buffer().dim(0).set_bounds(0, panel);
  Halide::ParamMap params;
  REQUIRE(W.bind(params, packed).ok());
  int panels = int((packed.N + panel - 1) / panel);
  Halide::Buffer<float> out(panel, int(packed.K + 1) / 2 * 2, panels);
  f.realize(out, target, params);
  return out;
}

}  // namespace

TEST_CASE("W(k, n) matches QuantizedWeight::value bit for bit", "[int4]") {
  std::vector<WeightSpec> specs;
  for (DType type : {DType::Int4, DType::UInt4})
    for (bool zp : {false, true})
      for (Granularity g : {Granularity::PerTensor, Granularity::PerN, Granularity::PerK, Granularity::BlockedK,
                            Granularity::BlockedN})
        specs.push_back(WeightSpec{type, zp, g, g == Granularity::BlockedN ? 4 : 16, false, false});
  specs.push_back(WeightSpec{DType::UInt4, true, Granularity::BlockedK, 32, true, false});  // MatMulNBits' form
  specs.push_back(WeightSpec{DType::Int4, false, Granularity::BlockedK, 16, true, true});   // float16 scales
  specs.push_back(WeightSpec{DType::Int4, true, Granularity::PerN, 0, false, true});

  uint64_t seed = 1;
  for (const WeightSpec& spec : specs) {
    for (auto [K, N, panel] : {std::tuple{37, 53, 16}, std::tuple{64, 8, 32}}) {
      QuantizedWeight w = test::random_weight(K, N, spec, ++seed);
      Result<PackedInt4Buffers> packed = pack_int4_weight(w, spec.trans_b, Int4Layout{panel, 2});
      INFO(spec.describe() << " K=" << K << " N=" << N << " panel=" << panel);
      REQUIRE(packed.ok());
      CHECK(packed.value().K == K);
      Halide::Buffer<float> got = dequantize(packed.value());
      int mismatches = 0;
      for (int k = 0; k < K; ++k)
        for (int n = 0; n < N; ++n) {
          float want = w.value(spec.trans_b ? int64_t(n) * K + k : int64_t(k) * N + n);
          float have = got(n % panel, k, n / panel);
          if (std::memcmp(&want, &have, sizeof(float)) != 0 && mismatches++ < 3)
            FAIL_CHECK("W(" << k << ", " << n << ") = " << have << ", want " << want);
        }
      CHECK(mismatches == 0);
    }
  }
}

TEST_CASE("W(k, n) is exact on older x86 tiers too", "[int4]") {
  // Other instruction selections (no FMA, no AVX-512) must not change a single bit either.
  for (const char* name : {"x86-64-sse41", "x86-64-avx2"}) {
    TargetSpec target = parse_target(name).value();
    for (const WeightSpec& spec : {WeightSpec{DType::Int4, false, Granularity::BlockedK, 16, false, false},
                                   WeightSpec{DType::UInt4, true, Granularity::PerN, 0, true, false},
                                   WeightSpec{DType::Int4, true, Granularity::PerK, 0, false, true}}) {
      QuantizedWeight w = test::random_weight(33, 40, spec, 77);
      PackedInt4Buffers packed = pack_int4_weight(w, spec.trans_b, Int4Layout{16, 2}).value();
      Halide::Buffer<float> got = dequantize(packed, target.halide);
      int mismatches = 0;
      for (int k = 0; k < 33; ++k)
        for (int n = 0; n < 40; ++n) {
          float want = w.value(spec.trans_b ? int64_t(n) * 33 + k : int64_t(k) * 40 + n);
          float have = got(n % 16, k, n / 16);
          mismatches += std::memcmp(&want, &have, sizeof(float)) != 0;
        }
      INFO(name << " " << spec.describe());
      CHECK(mismatches == 0);
    }
  }
}

TEST_CASE("the format names the quantization", "[int4]") {
  QuantizedWeight w = test::random_weight(64, 16, WeightSpec{DType::UInt4, true, Granularity::BlockedK, 32, true, false}, 3);
  Int4Format f = int4_format_of(w, true).value();
  CHECK(f.describe() == "uint4 blocked(k,32) zp f32");
  CHECK(f.k_group == 32);
  CHECK(f.per_n);
  QuantizedWeight t = test::random_weight(64, 16, WeightSpec{DType::Int4, false, Granularity::PerTensor, 0, false, false}, 4);
  CHECK(int4_format_of(t, false).value().describe() == "int4 per-tensor f32");

  QuantizedWeight bad = t;
  bad.data = Tensor(DType::Int8, {64, 16});
  Result<Int4Format> r = int4_format_of(bad, false);
  REQUIRE_FALSE(r.ok());
  CHECK(r.failure().kind == FailureKind::Unsupported);
}

TEST_CASE("Padded panels hold the dense packing's values with zeros between panels, and read back bit for bit",
          "[int4]") {
  const WeightSpec spec{DType::Int4, true, Granularity::BlockedK, 16, false, false};
  QuantizedWeight w = test::random_weight(100, 70, spec, 91);
  Int4Layout bytes{16, 2}, words{16, 8}, vnni{8, 32, true}, vnni_words{8, 32, true};
  words.words = vnni_words.words = true;
  for (const Int4Layout& dense_layout : {bytes, words, vnni, vnni_words})
    for (int pad : {16, 256}) {
      const PackedInt4Buffers dense = pack_int4_weight(w, false, dense_layout).value();
      Int4Layout layout = dense_layout;
      layout.panel_pad_bytes = pad;
      INFO(layout.describe());
      Result<PackedInt4Buffers> padded = pack_int4_weight(w, false, layout);
      REQUIRE(padded.ok());
      const Halide::Runtime::Buffer<>& d = dense.packed;
      const Halide::Runtime::Buffer<>& p = padded.value().packed;
      const int element = d.type().bytes();
      REQUIRE(p.type() == d.type());
      for (int i = 0; i < 3; ++i) REQUIRE(p.dim(i).extent() == d.dim(i).extent());
      CHECK(p.dim(1).stride() == d.dim(1).stride());
      CHECK(p.dim(2).stride() == d.dim(2).stride() + pad / element);
      const int64_t panel_bytes = int64_t(d.dim(2).stride()) * element;
      CHECK(panel_bytes == dense_panel_bytes(dense_layout, dense.format, 100));
      const auto* dense_bytes = static_cast<const uint8_t*>(d.data());
      const auto* padded_bytes = static_cast<const uint8_t*>(p.data());
      int mismatches = 0, nonzero_pad = 0;
      for (int panel = 0; panel < d.dim(2).extent(); ++panel) {
        const int64_t at = panel * (panel_bytes + pad);
        mismatches += std::memcmp(padded_bytes + at, dense_bytes + panel * panel_bytes, size_t(panel_bytes)) != 0;
        if (panel + 1 < d.dim(2).extent())
          for (int b = 0; b < pad; ++b) nonzero_pad += padded_bytes[at + panel_bytes + b] != 0;
      }
      CHECK(mismatches == 0);
      CHECK(nonzero_pad == 0);
      CHECK(int64_t(p.size_in_bytes()) == int64_t(d.size_in_bytes()) + (d.dim(2).extent() - 1) * pad);
    }

  SECTION("a kernel of the padded layout reads the weight bit for bit, and a dense one refuses it") {
    Int4Layout layout{16, 2};
    layout.panel_pad_bytes = 48;
    const PackedInt4Buffers padded = pack_int4_weight(w, false, layout).value();
    Halide::Buffer<float> got = dequantize(padded);
    int mismatches = 0;
    for (int k = 0; k < 100; ++k)
      for (int n = 0; n < 70; ++n) {
        float want = w.value(int64_t(k) * 70 + n), have = got(n % 16, k, n / 16);
        mismatches += std::memcmp(&want, &have, sizeof(float)) != 0;
      }
    CHECK(mismatches == 0);
    PackedInt4 dense_kernel("W", padded.format, Int4Layout{16, 2});
    Halide::ParamMap params;
    Status st = dense_kernel.bind(params, padded);
    REQUIRE_FALSE(st.ok());
    CHECK_THAT(st.failure().message, Catch::Contains("pad 48") && Catch::Contains("repack"));
  }
  SECTION("padding that would misalign vector loads is refused") {
    Int4Layout layout{16, 2};
    layout.panel_pad_bytes = 8;
    Result<PackedInt4Buffers> r = pack_int4_weight(w, false, layout);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.failure().message, Catch::Contains("multiple of 16 bytes"));
  }
}
