# System packages only (Debian bookworm): scripts/dev installs them.
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
find_package(OpenSSL REQUIRED)
find_package(CURL REQUIRED)
find_package(yaml-cpp REQUIRED)
find_package(spdlog REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(prometheus-cpp REQUIRED COMPONENTS core)
find_package(Boost 1.74 REQUIRED)
pkg_check_modules(RDKAFKA REQUIRED IMPORTED_TARGET rdkafka)
pkg_check_modules(PQXX REQUIRED IMPORTED_TARGET libpqxx)
# libpq itself (libpq-dev, which libpqxx-dev depends on): its conninfo parser (pg_connection.cpp).
pkg_check_modules(PQ REQUIRED IMPORTED_TARGET libpq)
# JSON pointer conditions of route filters (worker/route_filter.cpp): Debian libsimdjson-dev.
find_package(simdjson REQUIRED)
if(HOOKRELAY_TESTS)
  find_package(GTest REQUIRED)
endif()
