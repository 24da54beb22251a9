// Runs a compiled model on raw float32 input files and prints every output value, one per line
// ("NAME INDEX VALUE"). With --instances N, N instances run at once on N threads (the library's
// instances are independent) and the program checks that they all agree before printing.
//   run_model [--weights FILE] [--instances N] input0.bin [input1.bin ...]
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include MODEL_HEADER

#define JOIN(a, b) a##_##b
#define CALL(a, b) JOIN(a, b)
#define API(f) CALL(MODEL, f)

namespace {

// One instance of the model, owning its buffers.
class Model {
 public:
  explicit Model(const std::string& weights) {
    int rc = weights.empty() ? API(create)(&m_) : API(create_from_file)(weights.c_str(), &m_);
    check(rc, "create");
    for (int i = 0; i < API(num_inputs)(m_); ++i) inputs_.emplace_back(count(API(input_shape)(m_, i), API(input_rank)(m_, i)));
    for (int i = 0; i < API(num_outputs)(m_); ++i) outputs_.emplace_back(count(API(output_shape)(m_, i), API(output_rank)(m_, i)));
    for (size_t i = 0; i < inputs_.size(); ++i)
      check(API(bind_input)(m_, int(i), API(FLOAT32), API(input_shape)(m_, int(i)), API(input_rank)(m_, int(i)),
                            inputs_[i].data()),
            "bind_input");
    for (size_t i = 0; i < outputs_.size(); ++i)
      check(API(bind_output)(m_, int(i), API(FLOAT32), API(output_shape)(m_, int(i)), API(output_rank)(m_, int(i)),
                             outputs_[i].data()),
            "bind_output");
  }
  ~Model() { API(destroy)(m_); }
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  std::vector<std::vector<float>>& inputs() { return inputs_; }
  const std::vector<std::vector<float>>& outputs() const { return outputs_; }
  std::string output_name(size_t i) const { return API(output_name)(m_, int(i)); }
  void run() { check(API(run)(m_), "run"); }

 private:
  static size_t count(const int64_t* shape, int rank) {
    size_t n = 1;
    for (int d = 0; d < rank; ++d) n *= size_t(shape[d]);
    return n;
  }
  static void check(int rc, const char* what) {
    if (rc != API(OK)) throw std::runtime_error(std::string(what) + ": " + API(last_error)());
  }
  API(model)* m_ = nullptr;
  std::vector<std::vector<float>> inputs_, outputs_;
};

}  // namespace

int main(int argc, char** argv) {
  std::string weights;
  int instances = 1;
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--weights" && i + 1 < argc) weights = argv[++i];
    else if (a == "--instances" && i + 1 < argc) instances = std::stoi(argv[++i]);
    else files.push_back(a);
  }
  try {
    std::vector<std::unique_ptr<Model>> models;
    for (int k = 0; k < instances; ++k) models.push_back(std::make_unique<Model>(weights));
    if (files.size() != models[0]->inputs().size()) {
      std::fprintf(stderr, "usage: run_model [--weights FILE] [--instances N] <%zu raw float32 input files>\n",
                   models[0]->inputs().size());
      return 2;
    }
    for (auto& m : models)
      for (size_t i = 0; i < files.size(); ++i) {
        std::ifstream in(files[i], std::ios::binary);
        std::vector<float>& buf = m->inputs()[i];
        if (!in.read(reinterpret_cast<char*>(buf.data()), std::streamsize(buf.size() * sizeof(float))))
          throw std::runtime_error(files[i] + ": cannot read " + std::to_string(buf.size()) + " float32 values");
      }
    std::vector<std::thread> threads;
    std::vector<std::string> errors(models.size());
    for (size_t k = 0; k < models.size(); ++k)
      threads.emplace_back([&, k] {
        try {
          for (int repeat = 0; repeat < 3; ++repeat) models[k]->run();
        } catch (const std::exception& e) {
          errors[k] = e.what();
        }
      });
    for (std::thread& t : threads) t.join();
    for (const std::string& e : errors)
      if (!e.empty()) throw std::runtime_error(e);
    for (size_t k = 1; k < models.size(); ++k)
      if (models[k]->outputs() != models[0]->outputs()) throw std::runtime_error("instances disagree");
    const Model& m = *models[0];
    for (size_t i = 0; i < m.outputs().size(); ++i)
      for (size_t k = 0; k < m.outputs()[i].size(); ++k)
        std::printf("%s %zu %.9g\n", m.output_name(i).c_str(), k, m.outputs()[i][k]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
