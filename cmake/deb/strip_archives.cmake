# CPACK_PRE_BUILD_SCRIPTS (cmake/package.cmake): strips the debug info from
# the static libraries staged for the package, as Debian's dh_strip does;
# their symbols stay, so applications still link them.
file(GLOB_RECURSE archives "${CPACK_TEMPORARY_INSTALL_DIRECTORY}/*.a")
foreach(archive IN LISTS archives)
  execute_process(COMMAND ${CPACK_SDIFF_STRIP} --strip-debug ${archive} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${CPACK_SDIFF_STRIP} --strip-debug ${archive} failed: ${rc}")
  endif()
endforeach()
