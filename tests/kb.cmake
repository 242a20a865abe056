# KB files and their commands (issue 4): pm_snap (pathmap/pm_snap.h), engine/kb.h, the
# pmingest get/scan/count/stats/export/merge/intersect/subtract/verify commands.
set(PKB_PYTHON /usr/bin/python3)

pm_add_cunit(test_kb_snap
  SOURCES test_kb_snap.c
  LIBS pathmap
  LABELS unit kb
  TIMEOUT 300)

if(TARGET pmengine)
  pm_add_cunit(test_kb
    SOURCES test_kb.c
    LIBS pmengine
    LABELS unit kb omp
    TIMEOUT 300
    ENV PKB_TEST_DIR=${CMAKE_CURRENT_BINARY_DIR}/kb_unit)

  # Fuzz corpus replay: the libFuzzer target's entry point driven by an ordinary main over
  # tests/fuzz/kb_corpus (a regression test for every input the fuzzer ever found).
  add_executable(fuzz_kb_replay fuzz/fuzz_kb.c fuzz/replay_main.c)
  target_link_libraries(fuzz_kb_replay PRIVATE pmengine pm_flags)
  add_test(NAME fuzz_kb_replay COMMAND fuzz_kb_replay ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/kb_corpus)
  set_tests_properties(fuzz_kb_replay PROPERTIES LABELS "fuzz;kb" TIMEOUT 300)

  # Bounded libFuzzer run (needs clang; label fuzzrun, run by CI's fuzz step): builds its own
  # instrumented binary.
  file(GLOB PKB_FUZZ_LIB ${CMAKE_SOURCE_DIR}/pathmap/src/*.c)
  pm_add_fuzz_run(kb 45 65536 -fopenmp=libomp -I${CMAKE_SOURCE_DIR}/pathmap
    -I${CMAKE_SOURCE_DIR}/pathmap/src -I${CMAKE_SOURCE_DIR}/engine -I${CMAKE_SOURCE_DIR}/io
    ${CMAKE_SOURCE_DIR}/engine/kb.c ${CMAKE_SOURCE_DIR}/io/src/typemerge.c
    ${CMAKE_SOURCE_DIR}/io/src/msg.c ${PKB_FUZZ_LIB}
    -lxxhash)
endif()

if(TARGET pmingest)
  # Every command against a Python reference (dict), on the same inputs.
  add_test(NAME kb_cli
    COMMAND ${PKB_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/kb/cli_test.py $<TARGET_FILE:pmingest>
            ${CMAKE_CURRENT_BINARY_DIR}/kb_cli)
  set_tests_properties(kb_cli PROPERTIES LABELS "integration;kb" TIMEOUT 600)
  # kill -9 and SIGTERM during writes, a full file-size limit: the old KB stays intact.
  add_test(NAME kb_crash
    COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/kb/crash_test.sh $<TARGET_FILE:pmingest>
            ${CMAKE_CURRENT_BINARY_DIR}/kb_crash)
  set_tests_properties(kb_crash PROPERTIES LABELS "integration;kb" TIMEOUT 600)
endif()
