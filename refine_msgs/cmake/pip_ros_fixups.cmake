# ROS 2 wheels from PyPI (ros-jazzy-*) were built in a manylinux container, and their exported CMake
# targets still name that container's Python and NumPy include directories
# (/opt/python/cpXY-cpXY/...). CMake refuses to generate when an imported target names a missing
# directory. At the end of this directory's configuration, point those entries at the include
# directories of the Python that runs this build. On a normal ROS install no entry matches and
# nothing changes.

function(_refine_fix_wheel_include_dirs)
  get_property(_targets DIRECTORY "${CMAKE_CURRENT_SOURCE_DIR}" PROPERTY IMPORTED_TARGETS)
  set(_python_found FALSE)
  foreach(_target IN LISTS _targets)
    get_target_property(_dirs ${_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs)
      continue()
    endif()
    set(_fixed "")
    set(_changed FALSE)
    foreach(_dir IN LISTS _dirs)
      if(NOT EXISTS "${_dir}" AND _dir MATCHES "^/opt/python/cp[0-9]+-cp[0-9]+/")
        if(NOT _python_found)
          find_package(Python3 REQUIRED COMPONENTS Interpreter Development NumPy)
          set(_python_found TRUE)
        endif()
        set(_changed TRUE)
        if(_dir MATCHES "/numpy/")
          set(_dir "${Python3_NumPy_INCLUDE_DIRS}")
        elseif(_dir MATCHES "/include/python3")
          set(_dir "${Python3_INCLUDE_DIRS}")
        else()
          message(WARNING "${_target}: dropping missing include directory ${_dir}")
          continue()
        endif()
      endif()
      list(APPEND _fixed "${_dir}")
    endforeach()
    if(_changed)
      set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_fixed}")
    endif()
  endforeach()
endfunction()

cmake_language(DEFER CALL _refine_fix_wheel_include_dirs)
