# pathmap/ suites: the trie library on its own.
set(PM_MODEL ${CMAKE_CURRENT_SOURCE_DIR}/pathmap/model.c)
pm_add_cunit(test_pathmap_map SOURCES pathmap/test_map.c ${PM_MODEL}
  LIBS pathmap LABELS "unit;pathmap" TIMEOUT 120)
pm_add_cunit(test_pathmap_random SOURCES pathmap/test_random.c ${PM_MODEL}
  LIBS pathmap LABELS "unit;pathmap" TIMEOUT 600)
