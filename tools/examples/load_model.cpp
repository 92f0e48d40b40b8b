// Loads a model exported by `torchae export` (or built by `torchae zoo build`) with plain
// LibTorch, encodes a grayscale image and writes its reconstruction. Nothing of torchae is
// needed: the archive holds the model and its model card.
//
//   load_model runs/zoo/undercomplete-32.pt shirt.pgm shirt-reconstructed.pgm
//
// Images are binary PGM (P5, 8 bits), which any image tool writes, e.g.
// `python3 -c "import cv2; cv2.imwrite('x.pgm', cv2.imread('x.png', 0))"`.

#include <torch/script.h>

#include <cstdint>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>

namespace {

// Reads a binary PGM as a [1, 1, H, W] float tensor in [0, 1].
torch::Tensor read_pgm(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open");
  std::string magic;
  int64_t width = 0, height = 0, maxval = 0;
  in >> magic;
  // Header fields are separated by whitespace and may be interleaved with # comments.
  auto field = [&](int64_t& value) {
    in >> std::ws;
    while (in.peek() == '#') {
      in.ignore(1 << 20, '\n');
      in >> std::ws;
    }
    in >> value;
  };
  field(width);
  field(height);
  field(maxval);
  if (magic != "P5" || !in || width <= 0 || height <= 0 || maxval != 255) {
    throw std::runtime_error(path + ": not an 8-bit binary PGM (P5)");
  }
  in.get();  // the single whitespace byte before the pixels
  std::vector<uint8_t> pixels(static_cast<std::size_t>(width * height));
  if (!in.read(reinterpret_cast<char*>(pixels.data()), static_cast<std::streamsize>(pixels.size()))) {
    throw std::runtime_error(path + ": truncated");
  }
  return torch::from_blob(pixels.data(), {1, 1, height, width}, torch::kUInt8).to(torch::kFloat) / 255.0;
}

// Writes a [H, W] tensor with values in [0, 1] as a binary PGM.
void write_pgm(const std::string& path, const torch::Tensor& image) {
  const torch::Tensor bytes = (image.clamp(0, 1) * 255).round().to(torch::kUInt8).contiguous();
  std::ofstream out(path, std::ios::binary);
  out << "P5\n" << bytes.size(1) << " " << bytes.size(0) << "\n255\n";
  out.write(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()), static_cast<std::streamsize>(bytes.numel()));
  if (!out) throw std::runtime_error(path + ": cannot write");
}

// The string value of `"key": "..."` in the model card (JSON written by torchae); a plain
// search keeps this example free of a JSON library.
std::string card_string(const std::string& card, const std::string& key) {
  const std::string pattern = "\"" + key + "\": \"";
  const auto start = card.find(pattern);
  if (start == std::string::npos) return "?";
  const auto from = start + pattern.size();
  return card.substr(from, card.find('"', from) - from);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: load_model MODEL.pt IMAGE.pgm OUT.pgm\n";
    return 2;
  }
  try {
    // The model card (JSON) travels inside the archive as an extra file.
    torch::jit::ExtraFilesMap extra{{"model_card.json", ""}};
    torch::jit::Module model = torch::jit::load(argv[1], torch::kCPU, extra);
    model.eval();
    const std::string& card = extra["model_card.json"];
    std::cout << "model: " << card_string(card, "family") << ", torchae " << card_string(card, "torchae_version")
              << ", created " << card_string(card, "created") << "\n";

    torch::NoGradGuard no_grad;
    torch::Tensor x = read_pgm(argv[2]);
    // A model trained on centred data takes images minus the training mean it carries.
    const bool centered = model.hasattr("input_mean");
    const torch::Tensor mean = centered ? model.attr("input_mean").toTensor().view_as(x) : torch::zeros_like(x);
    const torch::Tensor code = model.get_method("encode")({x - mean}).toTensor();
    const torch::Tensor y = model.get_method("decode")({code}).toTensor() + mean;
    std::cout << "code: " << code.size(1) << " values, first " << code.flatten().slice(0, 0, 4) << "\n";
    std::cout << "reconstruction mse: " << (y - x).pow(2).mean().item<double>() << "\n";
    write_pgm(argv[3], y.view({x.size(2), x.size(3)}));
    std::cout << argv[3] << "\n";
  } catch (const std::exception& e) {
    // c10::Error carries its context on further lines; the first says what went wrong.
    const std::string what = e.what();
    std::cerr << "load_model: error: " << what.substr(0, what.find('\n')) << "\n";
    return 1;
  }
  return 0;
}
