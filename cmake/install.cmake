# What `cmake --install BUILD [--prefix P]` puts under the prefix, the
# directories as GNUInstallDirs names them:
#   bin/                          the programs of tools/
#   lib*/libsdiff.a               the public API (include/sdiff/), and beside it
#   lib*/libsdiff_{plugin,net,engine}.a, which it needs at link time: static
#                                 libraries carry their dependencies with them.
#                                 Their headers stay internal and are not installed.
#   include/sdiff/*.h             the public headers, sdiff/version.h among them
#   lib*/cmake/sdiff/             find_package(sdiff CONFIG) -> sdiff::sdiff
#   lib*/pkgconfig/sdiff.pc       the same for builds without CMake
# test/package/check_install.sh installs a build and builds examples/ against it.
include(CMakePackageConfigHelpers)

install(TARGETS sdiff-rocks-master sdiff-rocks-follower sdiff-ldb sdiff-demo
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# In link order. The engine, net and plugin are exported too (as
# sdiff::sdiff_engine, ...) because sdiff::sdiff names them for the linker.
install(TARGETS sdiff sdiff_plugin sdiff_net sdiff_engine EXPORT sdiffTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/sdiff
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.h")
install(FILES ${PROJECT_BINARY_DIR}/include/sdiff/version.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/sdiff)

set(SDIFF_CONFIG_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/sdiff)
install(EXPORT sdiffTargets NAMESPACE sdiff:: DESTINATION ${SDIFF_CONFIG_DIR})
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/sdiffConfig.cmake.in
  ${PROJECT_BINARY_DIR}/sdiffConfig.cmake INSTALL_DESTINATION ${SDIFF_CONFIG_DIR})
# Before 1.0 a minor release may break the API, so find_package(sdiff 0.1)
# accepts 0.1.x only; from 1.0 on, any 1.y.
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(SDIFF_VERSION_COMPATIBILITY SameMinorVersion)
else()
  set(SDIFF_VERSION_COMPATIBILITY SameMajorVersion)
endif()
write_basic_package_version_file(${PROJECT_BINARY_DIR}/sdiffConfigVersion.cmake
  COMPATIBILITY ${SDIFF_VERSION_COMPATIBILITY})
install(FILES ${PROJECT_BINARY_DIR}/sdiffConfig.cmake ${PROJECT_BINARY_DIR}/sdiffConfigVersion.cmake
  DESTINATION ${SDIFF_CONFIG_DIR})

# sdiff.pc names its directories relative to where pkg-config found it
# (${pcfiledir}), so it stays right under --prefix or DESTDIR, which are only
# known at install time.
set(pc_dir ${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig)
cmake_path(RELATIVE_PATH CMAKE_INSTALL_PREFIX BASE_DIRECTORY ${pc_dir} OUTPUT_VARIABLE SDIFF_PC_PREFIX)
cmake_path(RELATIVE_PATH CMAKE_INSTALL_FULL_LIBDIR BASE_DIRECTORY ${CMAKE_INSTALL_PREFIX}
  OUTPUT_VARIABLE SDIFF_PC_LIBDIR)
cmake_path(RELATIVE_PATH CMAKE_INSTALL_FULL_INCLUDEDIR BASE_DIRECTORY ${CMAKE_INSTALL_PREFIX}
  OUTPUT_VARIABLE SDIFF_PC_INCLUDEDIR)
configure_file(${CMAKE_CURRENT_LIST_DIR}/sdiff.pc.in ${PROJECT_BINARY_DIR}/sdiff.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/sdiff.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
