# Ingest engine (issue 5): unit suites (routing, partition paths, policies, determinism) and
# `pmingest ingest` end to end against a Python (h5py + dict) reference.
if(TARGET pmengine)
  pm_add_cunit(test_engine
    SOURCES engine/test_engine.c
    LIBS pmengine
    LABELS unit engine omp
    TIMEOUT 180
    ENV OMP_NUM_THREADS=2 PME_TEST_DIR=${CMAKE_CURRENT_BINARY_DIR}/engine_unit)
endif()

if(TARGET pmingest)
  add_test(NAME engine_ingest_cli
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/engine/ingest_test.py
            $<TARGET_FILE:pmingest> ${CMAKE_CURRENT_BINARY_DIR}/engine_cli)
  set_tests_properties(engine_ingest_cli PROPERTIES LABELS "integration;engine;omp" TIMEOUT 300)
  add_test(NAME engine_demo
    COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/engine/demo_test.sh $<TARGET_FILE:pmingest>
            ${CMAKE_CURRENT_BINARY_DIR}/demo)
  set_tests_properties(engine_demo PROPERTIES LABELS "integration;engine"
    ENVIRONMENT OMP_NUM_THREADS=2 TIMEOUT 120)
endif()

if(TARGET pmingest)
  # The command line on bad input: exit statuses, messages, no crash, no damaged output.
  add_test(NAME engine_cli_edges
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/engine/cli_edge_test.py
            $<TARGET_FILE:pmingest> ${CMAKE_CURRENT_BINARY_DIR}/engine_cli_edges)
  set_tests_properties(engine_cli_edges PROPERTIES LABELS "integration;engine" TIMEOUT 300)
endif()
