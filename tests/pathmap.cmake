# pathmap/ suites: the trie library on its own.
set(PM_MODEL ${CMAKE_CURRENT_SOURCE_DIR}/pathmap/model.c)
pm_add_cunit(test_pathmap_map SOURCES pathmap/test_map.c ${PM_MODEL}
  LIBS pathmap LABELS "unit;pathmap" TIMEOUT 120)
pm_add_cunit(test_pathmap_random SOURCES pathmap/test_random.c ${PM_MODEL}
  LIBS pathmap LABELS "unit;pathmap" TIMEOUT 600)
pm_add_cunit(test_pathmap_alloc SOURCES pathmap/test_alloc.c ${PM_MODEL}
  LIBS pathmap LABELS "unit;pathmap" TIMEOUT 600)
pm_add_cunit(test_pathmap_threads SOURCES pathmap/test_threads.c
  LIBS pathmap OpenMP::OpenMP_C LABELS "unit;pathmap;omp" TIMEOUT 300
  ENV OMP_NUM_THREADS=2)

# The operation fuzzer (tests/fuzz/fuzz_ops.c): its corpus replayed as an ordinary test, and a
# bounded libFuzzer run when clang is there.
add_executable(fuzz_ops_replay fuzz/fuzz_ops.c fuzz/replay_main.c ${PM_MODEL})
target_include_directories(fuzz_ops_replay PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/pathmap)
target_link_libraries(fuzz_ops_replay PRIVATE pathmap pm_flags)
add_test(NAME fuzz_ops_replay COMMAND fuzz_ops_replay ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/ops_corpus)
set_tests_properties(fuzz_ops_replay PROPERTIES LABELS "fuzz;pathmap" TIMEOUT 300)
file(GLOB PM_FUZZ_LIB ${CMAKE_SOURCE_DIR}/pathmap/src/*.c)
pm_add_fuzz_run(ops 45 4096 -I${CMAKE_SOURCE_DIR}/pathmap -I${CMAKE_CURRENT_SOURCE_DIR}/pathmap
  ${CMAKE_CURRENT_SOURCE_DIR}/pathmap/model.c ${PM_FUZZ_LIB} -lxxhash)
