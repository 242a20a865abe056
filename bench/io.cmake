# io/ read throughput against a bare H5Dread (built, never run by ctest):
#   build/bench/io_bench [RECORDS [DIR]]
find_package(HDF5 REQUIRED COMPONENTS C)
add_executable(io_bench io_bench.c)
target_link_libraries(io_bench PRIVATE pmio hdf5::hdf5 pm_flags)
