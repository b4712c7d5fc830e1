// On platforms other than Linux the addon loads but offers nothing; the
// TypeScript loader reports ERR_FDBROKER_UNSUPPORTED_PLATFORM on use.
#include <napi.h>

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("unsupported", Napi::Boolean::New(env, true));
  return exports;
}

NODE_API_MODULE(fdbroker, Init)
