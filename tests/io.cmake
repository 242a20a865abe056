# io/ (HDF5 layer) suites. Fixtures are written at test time by h5py (Debian's python3-h5py,
# hence /usr/bin/python3) into the build tree, by the setup test io_fixtures.
set(PIO_FIXTURE_DIR ${CMAKE_CURRENT_BINARY_DIR}/io_fixtures)
set(PIO_PYTHON /usr/bin/python3)
# test_io_read writes LZF datasets itself, through HDF5
find_package(HDF5 REQUIRED COMPONENTS C)

add_test(NAME io_fixtures
  COMMAND ${PIO_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/make_io_fixtures.py
          ${PIO_FIXTURE_DIR})
set_tests_properties(io_fixtures PROPERTIES FIXTURES_SETUP io_fixtures
  LABELS "unit;hdf5" TIMEOUT 120)

pm_add_cunit(test_io_read
  SOURCES test_io_read.c test_io_common.c
  LIBS pmio hdf5::hdf5
  LABELS unit hdf5
  TIMEOUT 120
  ENV PIO_FIXTURES=${PIO_FIXTURE_DIR})
set_tests_properties(test_io_read PROPERTIES FIXTURES_REQUIRED io_fixtures)

pm_add_cunit(test_io_write
  SOURCES test_io_write.c test_io_common.c
  LIBS pmio
  LABELS unit hdf5
  TIMEOUT 120
  ENV PIO_FIXTURES=${PIO_FIXTURE_DIR} PIO_OUT=${CMAKE_CURRENT_BINARY_DIR}/io_out)
set_tests_properties(test_io_write PROPERTIES FIXTURES_REQUIRED io_fixtures
  FIXTURES_SETUP io_exports)
add_test(NAME io_out_dir COMMAND ${CMAKE_COMMAND} -E make_directory
  ${CMAKE_CURRENT_BINARY_DIR}/io_out)
set_tests_properties(io_out_dir PROPERTIES FIXTURES_SETUP io_fixtures LABELS "unit;hdf5")

# h5py reads back what our exporter wrote: same dtypes, same records.
add_test(NAME io_exports_h5py
  COMMAND ${PIO_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/check_io_exports.py
          ${PIO_FIXTURE_DIR} ${CMAKE_CURRENT_BINARY_DIR}/io_out)
set_tests_properties(io_exports_h5py PROPERTIES FIXTURES_REQUIRED "io_fixtures;io_exports"
  LABELS "integration;hdf5" TIMEOUT 120)

# `pmingest gen` end to end: options, determinism, exit statuses, read back by h5py.
if(TARGET pmingest)
  add_test(NAME io_gen_cli
    COMMAND ${PIO_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/check_gen_cli.py
            $<TARGET_FILE:pmingest> ${CMAKE_CURRENT_BINARY_DIR}/io_gen_cli)
  set_tests_properties(io_gen_cli PROPERTIES LABELS "integration;hdf5" TIMEOUT 120)
endif()

# The heap reference check (io/src/heapcheck.c) parses untrusted file bytes: its fuzz target's
# corpus replayed as an ordinary test, and a bounded libFuzzer run (needs clang).
add_executable(fuzz_heap_replay fuzz/fuzz_heap.c fuzz/replay_main.c)
target_include_directories(fuzz_heap_replay PRIVATE ${CMAKE_SOURCE_DIR}/io/src)
target_link_libraries(fuzz_heap_replay PRIVATE pmio hdf5::hdf5 pm_flags)
add_test(NAME fuzz_heap_replay
  COMMAND fuzz_heap_replay ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/heap_corpus)
set_tests_properties(fuzz_heap_replay PROPERTIES LABELS "fuzz;hdf5" TIMEOUT 300)
list(TRANSFORM HDF5_INCLUDE_DIRS PREPEND -I OUTPUT_VARIABLE PIO_FUZZ_INCLUDES)
pm_add_fuzz_run(heap 30 65536 -I${CMAKE_SOURCE_DIR}/io -I${CMAKE_SOURCE_DIR}/io/src
  ${PIO_FUZZ_INCLUDES} ${CMAKE_SOURCE_DIR}/io/src/heapcheck.c ${CMAKE_SOURCE_DIR}/io/src/err.c
  ${CMAKE_SOURCE_DIR}/io/src/msg.c
  ${CMAKE_SOURCE_DIR}/io/src/batch.c ${HDF5_C_LIBRARIES})
