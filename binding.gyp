{
  "targets": [
    {
      "target_name": "fdbroker",
      "sources": ["native/fdbroker.cc", "native/accept_queue.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra"],
      "conditions": [
        ["OS!='linux'", { "sources!": ["native/fdbroker.cc", "native/accept_queue.cc"], "sources": ["native/unsupported.cc"] }]
      ]
    }
  ]
}
