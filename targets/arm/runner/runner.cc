// graphopt_runner: runs a graphopt artifact's library (a TVM Relax VM executable) once on the CPU.
//
// Built for aarch64 by scripts/setup_arm.sh and run under qemu-aarch64 by graphopt.targets.arm;
// it needs only the TVM runtime (libtvm_runtime.so, libtvm_ffi.so) and the tvm/ffi headers.
//
//   graphopt_runner LIB.so OUT_DIR [--weights=N] INPUT...
//     INPUT is PATH:DTYPE:SHAPE, e.g. x.bin:float32:1x784 (raw C-order bytes; SHAPE "" for a scalar);
//     with --weights=N the last N are a compressed artifact's decoded weights: prepared once by
//     main_transform_params (as graphopt.load does) and passed to main after the other inputs.
//   writes OUT_DIR/output_<i>.bin and OUT_DIR/outputs.txt (one "DTYPE SHAPE" line per output) and
//   prints "run_ms <milliseconds of the main call>".
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/dtype.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace ffi = tvm::ffi;

// 64-byte aligned host memory, as TVM's kernels assume (aligned_alloc wants a multiple of 64, not 0).
struct CPUAlloc {
  void AllocData(DLTensor* t) { t->data = std::aligned_alloc(64, std::max<size_t>(64, (ffi::GetDataSize(*t) + 63) / 64 * 64)); }
  void FreeData(DLTensor* t) { std::free(t->data); }
};

static ffi::Tensor ReadInput(const std::string& spec) {
  size_t shape_at = spec.rfind(':');
  size_t dtype_at = shape_at == std::string::npos || shape_at == 0 ? std::string::npos : spec.rfind(':', shape_at - 1);
  if (dtype_at == std::string::npos) throw std::runtime_error("bad input spec " + spec + " (want PATH:DTYPE:SHAPE)");
  std::vector<int64_t> shape;
  std::stringstream dims(spec.substr(shape_at + 1));
  for (std::string dim; std::getline(dims, dim, 'x');) shape.push_back(std::stoll(dim));
  DLDataType dtype = ffi::StringToDLDataType(spec.substr(dtype_at + 1, shape_at - dtype_at - 1));
  ffi::Tensor tensor = ffi::Tensor::FromNDAlloc(CPUAlloc(), ffi::ShapeView(shape.data(), shape.size()), dtype,
                                                DLDevice{kDLCPU, 0});
  std::ifstream file(spec.substr(0, dtype_at), std::ios::binary);
  size_t bytes = ffi::GetDataSize(*tensor.GetDLTensorPtr());
  if (!file.read(static_cast<char*>(tensor.data_ptr()), bytes) || file.peek() != EOF)
    throw std::runtime_error("input " + spec + " does not hold exactly " + std::to_string(bytes) + " bytes");
  return tensor;
}

// main returns a Tensor or a (possibly nested) Array of them; write them in order.
static void WriteOutputs(const ffi::Any& value, const std::string& out_dir, std::ofstream& index, int& count) {
  if (auto tensor = value.try_cast<ffi::Tensor>()) {
    std::ofstream(out_dir + "/output_" + std::to_string(count++) + ".bin", std::ios::binary)
        .write(static_cast<const char*>(tensor->data_ptr()), ffi::GetDataSize(*tensor->GetDLTensorPtr()));
    index << ffi::DLDataTypeToString(tensor->dtype()) << " ";
    for (int i = 0; i < tensor->ndim(); ++i) index << (i ? "x" : "") << tensor->shape()[i];
    index << "\n";
  } else if (auto items = value.try_cast<ffi::Array<ffi::Any>>()) {
    for (const ffi::Any& item : *items) WriteOutputs(item, out_dir, index, count);
  } else {
    throw std::runtime_error("main returned a value that is neither a tensor nor an array: " + value.GetTypeKey());
  }
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: " << argv[0] << " LIB.so OUT_DIR PATH:DTYPE:SHAPE...\n";
    return 2;
  }
  try {
    ffi::Module vm = ffi::Module::LoadFromFile(argv[1])->GetFunction("vm_load_executable").value()()
                         .cast<ffi::Module>();
    constexpr int kPooledAllocator = 2;
    vm->GetFunction("vm_initialization").value()(static_cast<int>(kDLCPU), 0, kPooledAllocator);
    int first = 3;
    size_t weight_count = 0;
    const std::string flag = "--weights=";
    if (argc > 3 && std::string(argv[3]).rfind(flag, 0) == 0) {
      weight_count = std::stoul(std::string(argv[3]).substr(flag.size()));
      first = 4;
    }
    std::vector<ffi::Tensor> inputs;
    for (int i = first; i < argc; ++i) inputs.push_back(ReadInput(argv[i]));
    if (weight_count > inputs.size()) throw std::runtime_error("--weights counts more tensors than were given");
    size_t model_inputs = inputs.size() - weight_count;
    std::vector<ffi::Any> values(inputs.begin(), inputs.begin() + model_inputs);
    if (weight_count) {
      ffi::Array<ffi::Tensor> raw(inputs.begin() + model_inputs, inputs.end());
      ffi::Any prepared = vm->GetFunction("main_transform_params").value()(raw);
      for (const ffi::Any& weight : prepared.cast<ffi::Array<ffi::Any>>()) values.push_back(weight);
    }
    std::vector<ffi::AnyView> args(values.begin(), values.end());

    ffi::Function run = vm->GetFunction("main").value();
    ffi::Any result;
    auto start = std::chrono::steady_clock::now();
    run.CallPacked(args.data(), static_cast<int32_t>(args.size()), &result);
    std::chrono::duration<double, std::milli> elapsed = std::chrono::steady_clock::now() - start;

    std::ofstream index(std::string(argv[2]) + "/outputs.txt");
    int count = 0;
    WriteOutputs(result, argv[2], index, count);
    std::cout << "run_ms " << elapsed.count() << "\n";
  } catch (const std::exception& error) {
    std::cerr << "graphopt_runner: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
