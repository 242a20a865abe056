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
