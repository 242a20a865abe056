# fresh_memory: first-touch time of fresh memory, back to back and after a pause (the noise a
# fill inherits on a virtual machine whose balloon hands free pages back to the host).
add_executable(fresh_memory ${CMAKE_CURRENT_LIST_DIR}/fresh_memory.c)
target_link_libraries(fresh_memory PRIVATE pm_flags)
